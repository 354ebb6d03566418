"""Posting Oscar's dashboard forms as a browser would: every field of the page's form, as rendered.

The product page of the dashboard is one form with the product's fields, its attributes
(``attr_<code>``) and four formsets (stock records, categories, images, recommendations),
each with its management form; reading them from the page keeps the tests to what they change.
"""

from __future__ import annotations

from html.parser import HTMLParser

FORM_ID = "create_update_product_form"


class _FormFields(HTMLParser):
    """The values a browser would submit from the form ``form_id`` (files left out)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, list[str]] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside or "name" not in attrs and tag != "option":
            return
        name = attrs.get("name")
        if tag == "input":
            kind = attrs.get("type", "text")
            if kind in ("file", "submit", "button") or (kind in ("checkbox", "radio") and "checked" not in attrs):
                return
            self.fields.setdefault(name, []).append(attrs.get("value") or ("on" if kind == "checkbox" else ""))
        elif tag == "select":
            self.select = name
            self.fields.setdefault(name, [])
        elif tag == "option" and self.select and "selected" in attrs:
            self.fields[self.select].append(attrs.get("value", ""))
        elif tag == "textarea":
            self.textarea = name
            self.fields[name] = [""]

    def handle_data(self, data):
        if self.textarea:
            self.fields[self.textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def form_fields(html: str, form_id: str = FORM_ID) -> dict[str, str | list[str]]:
    """The form's fields by name: a value, or a list for a name given several times."""
    parser = _FormFields(form_id)
    parser.feed(html)
    return {name: values[0] if len(values) == 1 else values for name, values in parser.fields.items() if values}
