import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qingfin.data.schema import (
    LABELS,
    SCHEMA_VERSION,
    UnknownLabelError,
    from_multi_hot,
    labels_document,
    labels_matrix,
    to_multi_hot,
)


def test_label_order_is_the_published_one():
    assert LABELS == ("impersonation", "traffic_diversion", "illegal_lending", "grey_industry", "defamation", "economic_rumor")
    assert SCHEMA_VERSION == 1


@given(st.sets(st.sampled_from(LABELS)))
def test_multi_hot_round_trip(labels):
    vector = to_multi_hot(labels)
    assert vector.dtype == np.float32 and vector.shape == (6,)
    assert from_multi_hot(vector) == [label for label in LABELS if label in labels]


def test_unknown_label_is_refused_by_name():
    with pytest.raises(UnknownLabelError, match="'fraud'"):
        to_multi_hot(["fraud"])


def test_labels_matrix_shapes():
    assert labels_matrix([]).shape == (0, 6)
    matrix = labels_matrix([["defamation"], []])
    assert matrix.tolist()[0][4] == 1.0 and matrix[1].sum() == 0


def test_labels_document_has_chinese_names():
    document = labels_document()
    assert document["schema_version"] == 1
    assert [item["id"] for item in document["labels"]] == list(LABELS)
    assert document["labels"][1]["zh"] == "隐蔽违规引流"
