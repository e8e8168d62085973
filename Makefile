# Shortcuts for the scripts; e.g. make test ARGS="tests/unit -x".
.PHONY: run test lock check-lock

run:
	./scripts/run

test:
	./scripts/test $(ARGS)

# After editing requirements.in or requirements-dev.in: recompile both hashed locks.
# make lock ARGS="--upgrade-package redis" moves one package to its newest release.
lock:
	./scripts/lock $(ARGS)

check-lock:
	./scripts/lock --check
