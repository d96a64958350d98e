from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("ingest", "0003_chunk_text_hash"),
    ]

    operations = [
        migrations.AddField(
            model_name="document",
            name="restricted_to_groups",
            field=models.ManyToManyField(
                blank=True, help_text="Empty: no restriction.", related_name="restricted_documents", to="auth.group"
            ),
        ),
    ]
