"""The optional REST API (``pip install django-visual-recs[api]``): DRF views over ``indexing``.

Include it under a prefix of your choice::

    path("api/visual-recs/", include("visual_recs.api.urls")),

Nothing outside this package imports Django REST framework.
"""
