from django.core.cache import caches
from rest_framework.throttling import UserRateThrottle


class PredictThrottle(UserRateThrottle):
    """Requests per token (per client address when predictions are public).

    The rate is PREDICT_THROTTLE_RATE (e.g. "100/second"; off when empty). The counts live in
    Redis so every instance behind nginx shares them.
    """

    scope = "predictions"

    @property
    def cache(self):
        return caches["throttle"]
