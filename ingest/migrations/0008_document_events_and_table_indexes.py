import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ingest", "0007_document_context")]

    operations = [
        migrations.CreateModel(
            name="DocumentEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("parsing", "Parsing"),
                            ("embedding", "Embedding"),
                            ("ready", "Ready"),
                            ("failed", "Failed"),
                        ],
                        max_length=20,
                    ),
                ),
                ("message", models.TextField(blank=True)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "document",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="events", to="ingest.document"
                    ),
                ),
            ],
            options={
                "ordering": ["at", "id"],
                "indexes": [models.Index(fields=["document", "at"], name="document_event_idx")],
            },
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["collection", "created_at", "id"], name="document_collection_time_idx"),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["collection", "name", "id"], name="document_collection_name_idx"),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(fields=["collection", "size", "id"], name="document_collection_size_idx"),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(
                fields=["collection", "status", "created_at", "id"], name="document_collection_status_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(
                fields=["collection", "file_type", "created_at", "id"], name="document_collection_type_idx"
            ),
        ),
    ]
