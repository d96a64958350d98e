from django.db import migrations


class Migration(migrations.Migration):
    """The auditor role: a permission of its own to read and export the audit log.

    Until now every staff user could; after this only superusers can until the role
    is granted (``manage.py audit grant --user NAME`` or ``--group NAME``).
    """

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="auditevent",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("read_audit_log", "Can read and export the audit log (auditor)")],
            },
        ),
    ]
