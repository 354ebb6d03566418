"""``{% similar_items %}``: the strip on a product page, its ``as`` form, and that it never breaks a page."""

from __future__ import annotations

import logging

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test.html import parse_html
from django.utils.html import escape

from tests.conftest import ids_of
from tests.testapp.models import Garment
from visual_recs import indexing, queue, registry
from visual_recs.contrib.catalog.models import Product

pytestmark = [pytest.mark.django_db]


def render(source: str, **context) -> str:
    return Template("{% load visual_recs %}" + source).render(Context(context))


@pytest.fixture
def men(fake_extractor, catalog_rows, make_catalog):
    return make_catalog(ids_of(catalog_rows, gender="Men", count=12))


def test_the_strip_shows_cards_with_photo_title_and_lazy_images(men):
    html = render("{% similar_items product limit=3 %}", product=men[0])
    expected = [item.object for item in indexing.recommendations(men[0], 3).items]
    assert html.count("<li") == 3
    for product in expected:
        assert f'data-object-id="{product.pk}"' in html
        img = f'<img class="visual-recs__image" src="{product.image.url}" alt="{product.title}" width="180" height="240" loading="lazy" decoding="async">'
        assert parse_html(img) in parse_html(html)
        assert f'<span class="visual-recs__title">{escape(product.title)}</span>' in html
    assert 'aria-label="Similar items"' in html and "<style>" in html
    assert "<a " not in html  # the bundled Product has no get_absolute_url in the test settings
    assert html.index(str(expected[0].pk)) < html.index(str(expected[1].pk)) < html.index(str(expected[2].pk))


def test_cards_link_to_the_product_page_of_a_shops_own_model(fake_extractor, catalog_rows, make_garments):
    garments = make_garments(ids_of(catalog_rows, gender="Boys", count=3), "kids")
    Garment.objects.filter(pk=garments[1].pk).update(name="Shirt & tie")
    html = render("{% similar_items garment %}", garment=garments[0])
    assert html.count("<li") == 2
    for garment in garments[1:]:
        assert f'<a class="visual-recs__link" href="/garments/{garment.uuid}/">' in html
    assert "Shirt &amp; tie" in html  # escaped


def test_the_as_form_gives_the_cards_to_custom_markup(men):
    html = render(
        "{% similar_items product limit=2 as items %}"
        "{% for item in items %}[{{ item.rank }}|{{ item.title }}|{{ item.image_url }}|{{ item.distance|floatformat:3 }}]{% endfor %}",
        product=men[0],
    )
    expected = indexing.recommendations(men[0], 2).items
    assert html == "".join(
        f"[{item.rank}|{escape(item.object.title)}|{item.object.image.url}|{item.distance:.3f}]" for item in expected
    )


def test_limit_may_come_from_a_variable(men):
    assert render("{% similar_items product limit=n %}", product=men[0], n=4).count("<li") == 4


def test_nothing_is_rendered_without_items(fake_extractor):
    product = Product.objects.create(title="No photo", gender="Men")
    assert render("{% similar_items product %}", product=product).strip() == ""


def test_a_failing_recommender_renders_nothing_and_logs_why(men, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("the database is on fire")

    monkeypatch.setattr(indexing, "recommendations", broken)
    with caplog.at_level(logging.ERROR, logger="visual_recs"):
        html = render("<p>{% similar_items product %}</p>{% similar_items product as items %}{{ items|length }}", product=men[0])
    assert html == "<p></p>0"
    assert len(caplog.records) == 2
    assert "could not be shown" in caplog.records[0].getMessage()
    assert "the database is on fire" in caplog.records[0].exc_text


def test_an_object_of_an_unregistered_model_or_a_bad_limit_renders_nothing(men, caplog):
    from django.contrib.auth.models import User

    user = User.objects.create(username="not-a-product")
    with caplog.at_level(logging.ERROR, logger="visual_recs"):
        assert render("{% similar_items user %}", user=user) == ""
        assert render("{% similar_items product limit='many' %}", product=men[0]) == ""
    assert len(caplog.records) == 2


def test_the_template_can_be_overridden(men, settings, tmp_path):
    (tmp_path / "visual_recs").mkdir()
    (tmp_path / "visual_recs" / "similar_items.html").write_text(
        "{% for item in items %}<b>{{ item.title }}</b>{% endfor %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    html = render("{% similar_items product limit=2 %}", product=men[0])
    assert html.count("<b>") == 2 and "<li" not in html


@pytest.mark.parametrize(
    "source",
    ["{% similar_items %}", "{% similar_items product count=3 %}", "{% similar_items product 3 %}", "{% similar_items product as %}"],
)
def test_a_malformed_tag_is_a_template_syntax_error(source):
    with pytest.raises(TemplateSyntaxError):
        Template("{% load visual_recs %}" + source)


@pytest.mark.parametrize("limit", [1, 11])
def test_the_tag_takes_four_queries_whatever_the_limit(men, django_assert_max_num_queries, limit):
    registry.for_model(Product).content_type  # cached per process after the first use
    template = Template("{% load visual_recs %}{% similar_items product limit=n %}")
    with django_assert_max_num_queries(4):
        html = template.render(Context({"product": men[0], "n": limit}))
    assert html.count("<li") == limit


def test_a_product_deleted_or_deactivated_after_the_lists_were_built_never_shows(men):
    targets = [item.object for item in indexing.recommendations(men[0], 11).items]
    with queue.paused():
        Product.objects.filter(pk=targets[0].pk).update(is_active=False)
        Product.objects.get(pk=targets[1].pk).delete()
    html = render("{% similar_items product limit=11 %}", product=men[0])
    assert f'data-object-id="{targets[0].pk}"' not in html
    assert f'data-object-id="{targets[1].pk}"' not in html
    assert html.count("<li") == 9
