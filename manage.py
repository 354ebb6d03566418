#!/usr/bin/env python
import os
import secrets
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_shop.settings")
    serving = sys.argv[1:2] == ["runserver"]
    if not serving and not os.environ.get("DJANGO_SECRET_KEY"):
        # migrate, makemigrations, check, demo_setup...: nothing they sign outlives the command,
        # so a throwaway key does. Servers (runserver here, gunicorn through wsgi.py) still
        # refuse to start without DJANGO_SECRET_KEY unless DJANGO_DEBUG=1.
        os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
