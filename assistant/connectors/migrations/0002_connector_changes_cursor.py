from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connectors", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="connector",
            name="changes_cursor",
            field=models.TextField(blank=True, default=""),
        ),
    ]
