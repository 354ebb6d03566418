"""An existing shop's own product model: UUID keys, other field names, its own notion of active."""

import uuid

from django.db import models


class Garment(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft"
        LIVE = "live"
        ARCHIVED = "archived"

    uuid = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    audience = models.CharField(max_length=20)
    photo = models.ImageField(upload_to="garments/", blank=True, null=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.LIVE)

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return f"/garments/{self.uuid}/"
