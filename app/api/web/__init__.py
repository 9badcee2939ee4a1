"""The parts of the HTML console behind :mod:`app.api.dashboard`, one job each.

- :mod:`~app.api.web.kit`: who looks (session or key), their CSRF token and role, page
  rendering with the security headers;
- :mod:`~app.api.web.assets`: the console's own CSS and JavaScript, served by the app;
- :mod:`~app.api.web.live`: the small JSON documents the pages poll to update in place;
- :mod:`~app.api.web.actions`: cancel, retry and bulk operations from forms (CSRF, roles);
- :mod:`~app.api.web.charts`: chart geometry as inline SVG (pure);
- :mod:`~app.api.web.fleet`: workers and queues as Celery and the broker see them.
"""
