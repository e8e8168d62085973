# Shortcuts for the two scripts; e.g. make test ARGS="tests/unit -x".
.PHONY: run test

run:
	./scripts/run

test:
	./scripts/test $(ARGS)
