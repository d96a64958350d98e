from django.db import migrations, models


def context_from_title(apps, schema_editor):
    # Documents indexed before the context line embedded their title: the same text.
    Document = apps.get_model("ingest", "Document")
    Document.objects.update(context=models.F("title"))


class Migration(migrations.Migration):
    dependencies = [("ingest", "0006_document_separate_copy_removed")]

    operations = [
        migrations.AddField(
            model_name="document",
            name="title_candidates",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="document",
            name="context",
            field=models.CharField(blank=True, default="", max_length=500),
        ),
        migrations.AlterField(
            model_name="document",
            name="title",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The first title no other document opens with, else the name.",
                max_length=500,
            ),
        ),
        migrations.RunPython(context_from_title, migrations.RunPython.noop),
    ]
