from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_conversation_document_message_reasoning"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="first_token_ms",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="timings",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
