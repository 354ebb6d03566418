from __future__ import annotations

from django.urls import path
from oscar.core import application  # the module, not the class: Django takes every AppConfig class here as a candidate


class VisualRecsOscarConfig(application.OscarDashboardConfig):
    """The Oscar glue, and a dashboard app: its page is staff only, like Oscar's own dashboard apps.

    Being an ``OscarDashboardConfig`` is what lets ``OSCAR_DASHBOARD_NAVIGATION`` link to its
    page: Oscar's menu checks a link's permissions through the dashboard app that owns the URL.
    """

    name = "visual_recs.contrib.oscar"
    label = "visual_recs_oscar"
    verbose_name = "Visual recommendations (django-oscar)"
    namespace = "visual_recs_oscar"
    default_auto_field = "django.db.models.BigAutoField"
    default_permissions = ["is_staff"]
    # The rule pages: staff holding the rule's model permissions, as Oscar's own dashboards map theirs.
    permissions_map = {
        "visual-recs-rules": (["is_staff", "visual_recs.view_rule"], ["is_staff", "visual_recs.change_rule"]),
        "visual-recs-rule-create": ["is_staff", "visual_recs.add_rule"],
        "visual-recs-rule-update": ["is_staff", "visual_recs.change_rule"],
        "visual-recs-rule-delete": ["is_staff", "visual_recs.delete_rule"],
    }

    def ready(self) -> None:
        from . import bulk_actions, recommendations

        recommendations.connect()
        bulk_actions.follow()

    def get_urls(self):
        from . import views

        return self.post_process_urls([
            path("", views.IndexStatusView.as_view(), name="visual-recs-index"),
            path("rules/", views.RuleListView.as_view(), name="visual-recs-rules"),
            path("rules/add/", views.RuleCreateView.as_view(), name="visual-recs-rule-create"),
            path("rules/<int:pk>/", views.RuleUpdateView.as_view(), name="visual-recs-rule-update"),
            path("rules/<int:pk>/delete/", views.RuleDeleteView.as_view(), name="visual-recs-rule-delete"),
        ])
