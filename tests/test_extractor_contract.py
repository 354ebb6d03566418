"""The extractor contract (``visual_recs.testing.ExtractorTests``) run against the fast extractor and the test fake."""

from __future__ import annotations

import pytest

from tests.fakes import ColourGridExtractor
from visual_recs.testing import ExtractorTests


class TestFastResNet50Extractor(ExtractorTests):
    @pytest.fixture(autouse=True)
    def weights(self, resnet_weights):
        """The real weights and converted networks, built into the cache once."""

    def make_extractor(self):
        from visual_recs.backends.fast import FastResNet50Extractor

        return FastResNet50Extractor()


class TestColourGridExtractor(ExtractorTests):
    def make_extractor(self):
        return ColourGridExtractor()
