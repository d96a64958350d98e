#!/usr/bin/env bash
# The parsers shell out to Debian tools: tesseract (OCR of scans and images),
# poppler's pdftoppm (renders PDF pages for OCR) and pandoc (EPUB, RTF, ODT).
# gettext (xgettext, msgfmt) extracts and compiles the translations (make messages);
# the compiled catalogs are committed, so only that and its test need it.
# postgresql-client (pg_dump, pg_restore, psql): manage.py backup/restore on PostgreSQL
# and their tests (the server's packages bring it too).
# slapd and ldap-utils (ldapmodify): the directory tests run a private OpenLDAP
# (tests/support/slapd.py); dovecot-imapd and samba: the IMAP and SMB connectors' tests
# start a private Dovecot and a private smbd on loopback (tests/support/mailservers.py);
# smbpasswd comes with samba-common-bin. The product itself needs none of them.
# Install whichever are missing when we may; otherwise say what will not work.
set -euo pipefail
declare -A needed=([tesseract]=tesseract-ocr [pdftoppm]=poppler-utils [pandoc]=pandoc [xgettext]=gettext [pg_dump]=postgresql-client [slapd]=slapd [ldapmodify]=ldap-utils [dovecot]=dovecot-imapd [smbd]=samba [smbpasswd]=samba-common-bin)
missing=()
for command in "${!needed[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${needed[$command]}")
done
# tesseract without its English model cannot read anything.
if command -v tesseract >/dev/null 2>&1; then
  languages=$(tesseract --list-langs 2>/dev/null || true)
  grep -qx eng <<<"$languages" || missing+=(tesseract-ocr-eng)
fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages for the parsers and backups: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing Debian packages ${missing[*]} cannot be installed here; scans, images, EPUB, RTF and ODT will fail to parse" >&2
fi
