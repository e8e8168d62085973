"""The RQ worker class: loads the default models once, before it forks work horses.

RQ runs every job in a freshly forked horse, so a model loaded inside a job is loaded again by
the next one. Loaded in the worker itself, it is inherited by every horse (copy-on-write).
"""

import gc

from rq import Worker

from modelregistry import loader


class ModelportWorker(Worker):
    def work(self, *args, **kwargs):
        loader.warm_defaults()
        # Keep the garbage collector of each horse off the inherited objects: scanning them
        # would write to their pages and copy them all (copy-on-write) in every horse.
        gc.freeze()
        return super().work(*args, **kwargs)
