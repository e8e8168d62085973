from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("predictions", "0004_job_format_from_the_table"),
    ]

    operations = [
        migrations.AddField(
            model_name="predictionjob",
            name="bytes_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="predictionjob",
            name="callback_url",
            field=models.URLField(
                blank=True, help_text="POSTed the job's document when it ends.", max_length=2000
            ),
        ),
        migrations.AddField(
            model_name="predictionjob",
            name="callback_attempts",
            field=models.JSONField(
                blank=True, default=list, help_text="Each delivery: at, status_code or error."
            ),
        ),
        migrations.AddIndex(
            model_name="predictionjob",
            index=models.Index(fields=["owner", "created_at"], name="job_owner_created"),
        ),
    ]
