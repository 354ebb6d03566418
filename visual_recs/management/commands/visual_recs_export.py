from __future__ import annotations

from contextlib import nullcontext
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from visual_recs import exporting
from visual_recs.management.output import atomic_file, unwrapped
from visual_recs.management.progress import progress_bar
from visual_recs.management.selection import check_partition, selected_models

MIN_LIMIT, MAX_LIMIT = 1, 100


class Command(BaseCommand):
    help = (
        "Write every shown product's similar items, as its page shows them, for feeds, email and "
        "other systems: JSON Lines (one product a line) or CSV (one product and item a row)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", dest="key", metavar="KEY", help="Key in VISUAL_RECS['MODELS'] (default: every model)."
        )
        parser.add_argument(
            "--format",
            dest="output_format",
            choices=exporting.FORMATS,
            default="jsonl",
            help="jsonl: a JSON object a product (the default); csv: a row per product and similar item.",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=5,
            metavar="N",
            help=f"Similar items per product, {MIN_LIMIT} to {MAX_LIMIT} (default 5).",
        )
        parser.add_argument(
            "--output",
            metavar="PATH",
            help="The file to write (default: stdout); it appears, or is replaced, only once complete.",
        )
        parser.add_argument("--partition", metavar="P", help="Only products of this partition (e.g. a gender).")
        parser.add_argument(
            "--base-url",
            metavar="URL",
            help="The shop's address, e.g. https://shop.example: item URLs are made absolute on it.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def handle(
        self,
        *args,
        key=None,
        output_format="jsonl",
        limit=5,
        output=None,
        partition=None,
        base_url=None,
        no_progress=False,
        **options,
    ):
        # Every option is checked before anything is written.
        if not MIN_LIMIT <= limit <= MAX_LIMIT:
            raise CommandError(f"--limit must be from {MIN_LIMIT} to {MAX_LIMIT}, not {limit}.")
        _check_base_url(base_url)
        selected = selected_models(key)
        check_partition(selected, partition)
        summaries = []
        with atomic_file(output) if output else nullcontext(unwrapped(self.stdout)) as stream:
            writer = exporting.WRITERS[output_format](stream)
            for indexed_model in selected:
                products = exporting.exported_products(indexed_model, partition)
                total = products.count()
                desc = f"Exporting {indexed_model.key}"
                with progress_bar(self.stderr, total=total, desc=desc, unit="obj", disable=no_progress) as bar:
                    summary = exporting.export(
                        indexed_model, products, writer, limit=limit, base_url=base_url, progress=bar.update
                    )
                summaries.append(f"{indexed_model.key}: {summary}.")
        # Exported to stdout, the summary goes to stderr: the data stream stays nothing but data.
        report = self.stdout if output else self.stderr
        for line in summaries:
            report.write(line)
        if output:
            self.stdout.write(f"Written to {output}.")


def _check_base_url(base_url: str | None) -> None:
    if base_url is None:
        return
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"--base-url must be an http(s) address such as https://shop.example, not {base_url!r}.")
