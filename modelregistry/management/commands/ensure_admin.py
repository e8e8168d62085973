"""Create the admin user once and print its login; its API token only the first time."""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from knox.models import AuthToken

from core.authentication import create_token


class Command(BaseCommand):
    help = (
        "Create a superuser from DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL (or 'admin' with a "
        "generated password kept in var/admin-password) when missing; print its login, and an API "
        "token when it has none (only its hash is kept: it is shown this once)."
    )

    def handle(self, *args, **options):
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "admin@example.com")
        password_file = settings.VAR_DIR / "admin-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            if not password:
                password = secrets.token_urlsafe(12)
                password_file.parent.mkdir(parents=True, exist_ok=True)
                password_file.write_text(password + "\n")
                password_file.chmod(0o600)
            user = user_model.objects.create_superuser(username, email, password)
            self.stdout.write(f"created superuser {username!r}")
        elif not password and password_file.exists():
            password = password_file.read_text().strip()
        self.stdout.write(f"admin login: {username} / {password or '(as set before)'}")
        prefixes = list(AuthToken.objects.filter(user=user).values_list("token_key", flat=True))
        if prefixes:
            self.stdout.write(
                f"API token:   {prefixes[0]}... (printed at first set-up; make another with "
                f"`python manage.py create_token {username}` or in admin > Auth tokens)"
            )
        else:
            _, token = create_token(user)
            self.stdout.write(f"API token:   {token}  (shown this once: only its hash is kept)")
