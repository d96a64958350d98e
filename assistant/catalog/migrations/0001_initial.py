import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[("llm", "Language model"), ("embedding", "Embedding model"), ("reranker", "Reranker")],
                        max_length=20,
                    ),
                ),
                ("name", models.CharField(max_length=500)),
                ("licence", models.CharField(blank=True, max_length=200)),
                ("source", models.CharField(blank=True, max_length=500)),
                ("file_sha256", models.CharField(blank=True, max_length=64)),
                ("recorded_at", models.DateTimeField(blank=True, null=True)),
                (
                    "recorded_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["kind", "name"],
                "constraints": [models.UniqueConstraint(fields=("kind", "name"), name="model_record_unique_kind_name")],
            },
        ),
    ]
