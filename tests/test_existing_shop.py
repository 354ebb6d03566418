"""The app plugged into "an existing shop": its own model, UUID keys, other field names, its own 'active'."""

from __future__ import annotations

import uuid

import pytest
from django.core.files.base import ContentFile

from tests.conftest import ids_of, photo_bytes
from tests.testapp.models import Garment
from visual_recs import indexing, registry
from visual_recs.models import FeatureVector, SimilarItem

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def make_garment(django_capture_on_commit_callbacks):
    def make(product_id: str, audience: str, state: str = Garment.State.LIVE) -> Garment:
        garment = Garment(name=f"garment {product_id}", audience=audience, state=state)
        garment.photo.save(f"{product_id}.jpg", ContentFile(photo_bytes(product_id)), save=False)
        with django_capture_on_commit_callbacks(execute=True):
            garment.save()
        return garment

    return make


def test_a_shops_own_model_is_indexed_and_listed(resnet_weights, catalog_rows, make_garment):
    adults = [make_garment(pid, "adult") for pid in ids_of(catalog_rows, gender="Men", count=4)]
    kids = [make_garment(pid, "kids") for pid in ids_of(catalog_rows, gender="Boys", count=3)]
    draft = make_garment(ids_of(catalog_rows, gender="Women", count=1)[0], "adult", state=Garment.State.DRAFT)

    garments = registry.get("garments")
    content_type = garments.content_type
    assert content_type.model == "garment"
    vector = FeatureVector.objects.get(content_type=content_type, object_id=str(adults[0].uuid))
    assert vector.status == "ready" and vector.partition == "adult" and vector.dims == 2048
    uuid.UUID(vector.object_id)  # the CharField holds the UUID key as text

    audience_of = {str(g.uuid): g.audience for g in adults + kids + [draft]}
    for garment in adults + kids:
        targets = list(
            SimilarItem.objects.filter(content_type=content_type, source_id=str(garment.uuid)).values_list(
                "target_id", flat=True
            )
        )
        # Its own audience only, and never the draft: the shop's notion of "active" is respected.
        assert {audience_of[t] for t in targets} == {garment.audience}
        assert str(draft.uuid) not in targets
        assert len(targets) == (3 if garment.audience == "adult" else 2)

    # The draft product has a vector and its own list, but is not shown to anyone.
    assert FeatureVector.objects.get(object_id=str(draft.uuid)).listed is False
    assert len(indexing.similar_to(draft, limit=5)) == 4
    assert all(item.object.state == "live" for item in indexing.similar_to(adults[0], limit=5))


def test_publishing_a_draft_adds_it_to_other_lists(resnet_weights, catalog_rows, make_garment, django_capture_on_commit_callbacks):
    first, second = (make_garment(pid, "adult") for pid in ids_of(catalog_rows, gender="Men", count=2))
    draft = make_garment(ids_of(catalog_rows, gender="Men", count=3)[2], "adult", state=Garment.State.DRAFT)
    assert [s.object for s in indexing.similar_to(first, limit=5)] == [second]

    draft.state = Garment.State.LIVE
    with django_capture_on_commit_callbacks(execute=True):
        draft.save()
    assert {s.object.uuid for s in indexing.similar_to(first, limit=5)} == {second.uuid, draft.uuid}
