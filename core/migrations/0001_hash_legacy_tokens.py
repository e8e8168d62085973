"""Move DRF's plain-text API tokens (rest_framework.authtoken, used before) to knox digests.

Each old key keeps working: knox finds a token by its first characters and checks its SHA-512
digest, so a row with `token_key = key[:15]` and `digest = sha512(key)` accepts the same key.
The plain-text rows are then deleted. There is no way back (the keys are not kept): reversing
leaves the old table empty, and its users make new tokens.
"""

import datetime

from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

LEGACY_TABLE = "authtoken_token"


def _aware(created) -> datetime.datetime:
    """A token's creation time as an aware datetime (SQLite hands back text or a naive UTC)."""
    if isinstance(created, str):
        created = parse_datetime(created) or timezone.now()
    if timezone.is_naive(created):
        created = created.replace(tzinfo=datetime.UTC)
    return created


def hash_legacy_tokens(apps, schema_editor) -> None:
    """Add a knox row for each DRF token, then delete the DRF rows (their keys in clear)."""
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return  # a fresh install, or DRF's token app was never migrated
    auth_token = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {LEGACY_TABLE}")
        legacy = cursor.fetchall()
    for key, user_id, created in legacy:
        digest = hash_token(key)
        if not auth_token.objects.filter(digest=digest).exists():
            row = auth_token(digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH])
            row.user_id = user_id
            row.save(force_insert=True)
            auth_token.objects.filter(digest=digest).update(created=_aware(created))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {LEGACY_TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
