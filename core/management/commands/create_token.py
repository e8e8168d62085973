"""Make a new API token for a user and print it: the only time it is shown."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.authentication import create_token


class Command(BaseCommand):
    help = "Make a new API token for USERNAME and print it (only a hash of it is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        _, token = create_token(user)
        self.stdout.write(token)
