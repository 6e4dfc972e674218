"""The web console at ``/ui``: routes (:mod:`~salara.api.ui.routes`), live calls (:mod:`~salara.api.ui.feed`),
the Recent calls and Health bodies (:mod:`~salara.api.ui.views`) and its static files (``static/``)."""
