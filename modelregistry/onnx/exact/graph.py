"""Building the exact graph: names that cannot clash, constants, one-output nodes, and the
outputs and link functions every family shares."""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

MAIN_OPSET = 21
ML_OPSET = 5  # the first ai.onnx.ml opset with TreeEnsemble (double splits and weights)


class UnsupportedModel(Exception):
    """The estimator (or a step of it) cannot be reproduced exactly; the reason is the message."""


@dataclass
class Graph:
    """Nodes and initializers to append, with names that cannot clash with the front's."""

    taken: set[str]
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def name(self, hint: str) -> str:
        """`hint`, or `hint_N`, whichever is still free."""
        candidate, number = hint, 0
        while candidate in self.taken:
            number += 1
            candidate = f"{hint}_{number}"
        self.taken.add(candidate)
        return candidate

    def const(self, value, hint: str) -> str:
        """An initializer holding `value` (a numpy array or scalar)."""
        name = self.name(f"exact_{hint}")
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], *, out: str | None = None, **attrs) -> str:
        """Add one node with one output; `domain` among `attrs` picks the operator set."""
        domain = attrs.pop("domain", "")
        output = self.name(out or f"exact_{op_type.lower()}")
        self.nodes.append(
            helper.make_node(
                op_type,
                inputs,
                [output],
                name=self.name(f"exact_{op_type}"),
                domain=domain,
                **attrs,
            )
        )
        return output


# An output: (name, ONNX element type, shape).
Output = tuple[str, int, list]


def regression_outputs(graph: Graph, values: str) -> list[Output]:
    """The regression value [rows, 1] as the model's only output."""
    return [(graph.op("Identity", [values], out="value"), TensorProto.DOUBLE, [None, 1])]


def classification_outputs(
    graph: Graph, classes: np.ndarray, indices: str, probabilities: str
) -> list[Output]:
    """Labels (classes_[indices]) and the probabilities [rows, classes] as outputs."""
    labels, elem_type = _class_constant(classes)
    label = graph.op("Gather", [graph.const(labels, "classes"), indices], out="label", axis=0)
    probabilities = graph.op("Identity", [probabilities], out="probabilities")
    return [(label, elem_type, [None]), (probabilities, TensorProto.DOUBLE, [None, len(classes)])]


def _class_constant(classes: np.ndarray) -> tuple[np.ndarray, int]:
    """`classes_` as an ONNX-storable array and its element type."""
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64), TensorProto.INT64
    if classes.dtype.kind == "b":
        return classes, TensorProto.BOOL
    if classes.dtype.kind == "f":
        return classes.astype(np.float64), TensorProto.DOUBLE
    if all(isinstance(label, str) for label in classes):
        return np.array(list(classes), dtype=object), TensorProto.STRING
    raise UnsupportedModel(f"class labels of type {classes.dtype} are not supported")


def above(graph: Graph, raw: str, *, inclusive: bool) -> str:
    """Index 1 where the [rows, 1] score is > 0 (>= 0 when inclusive), else 0, as [rows]."""
    compare = "GreaterOrEqual" if inclusive else "Greater"
    mask = graph.op(compare, [raw, graph.const(np.float64(0.0), "zero")])
    indices = graph.op("Cast", [mask], to=TensorProto.INT64)
    return graph.op("Reshape", [indices, graph.const(np.array([-1], np.int64), "flat")])


def argmax(graph: Graph, scores: str) -> str:
    """Column of the first largest score per row, as numpy's argmax picks it."""
    return graph.op("ArgMax", [scores], axis=1, keepdims=0, select_last_index=0)


def binary_probabilities(graph: Graph, raw: str, *, doubled: bool = False) -> str:
    """[1 - p, p] with p = expit(raw) (expit(2 raw) for the exponential loss)."""
    if doubled:
        raw = graph.op("Mul", [raw, graph.const(np.float64(2.0), "two")])
    positive = graph.op("Sigmoid", [raw])
    negative = graph.op("Sub", [graph.const(np.float64(1.0), "one"), positive])
    return graph.op("Concat", [negative, positive], axis=1)


def softmax(graph: Graph, raw: str) -> str:
    """scikit-learn's softmax step by step: subtract the row max, exp, divide by the sum."""
    axis = graph.const(np.array([1], np.int64), "axis1")
    shifted = graph.op("Sub", [raw, graph.op("ReduceMax", [raw, axis], keepdims=1)])
    exponentials = graph.op("Exp", [shifted])
    return graph.op("Div", [exponentials, graph.op("ReduceSum", [exponentials, axis], keepdims=1)])


# How a family writes its final estimator: (estimator, graph, input columns) -> outputs.
Tail = Callable[[object, Graph, str], list[Output]]
