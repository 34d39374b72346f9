"""CSV tables never lose or change a row: byte-order marks, missing values, short rows, blank lines,
overflow and huge lines, each with the line that caused it."""

import numpy as np
import pytest

from pyro_vae.data import csv_tables
from pyro_vae.data.readers import load_table


def write(tmp_path, text, name="t.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_a_byte_order_mark_keeps_the_first_row(tmp_path):
    path = write(tmp_path, "1,2\n3,4\n5,6\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    x, _ = load_table(path)
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("1,NA,3\n4,5,6\n7,8,9\n", "line 1, column 2: 'NA'"),  # the first row is data, not a header
        ("1,2,3\n4,,6\n7,8,9\n", "line 2, column 2: an empty cell"),
        ("1,2,3\n4,5\n7,8,9\n", "line 2: 2 values where the first row has 3"),
        ("1,2\n3,1e39\n5,6\n", "line 2, column 2: '1e39', beyond the float32 range"),
        ("1,2\n3,inf\n5,6\n", "line 2, column 2: 'inf'"),
        ("a,b\n1,2\n3,nan\n", "line 3, column 2 ('b'): 'nan'"),
    ],
)
def test_a_row_that_does_not_parse_is_refused_with_its_line(tmp_path, text, where):
    with pytest.raises(ValueError) as error:
        load_table(write(tmp_path, text))
    assert where in str(error.value) and "t.csv" in str(error.value)


def test_blank_lines_are_not_rows_and_headers_are_names_only(tmp_path):
    x, _ = load_table(write(tmp_path, "a,b\n\n1,2\n   \n3,4\n5,6\n\n\n"))
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]]
    values, header, _ = csv_tables.read_csv(write(tmp_path, ',a,"b, quoted"\n0,1,2\n1,3,4\n'))
    assert header == ["", "a", "b, quoted"] and values.tolist() == [[0, 1, 2], [1, 3, 4]]


def test_a_huge_line_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_tables, "MAX_LINE_CHARS", 1000)
    path = write(tmp_path, ",".join(["1"] * 5000))
    with pytest.raises(ValueError, match="line 1: longer than 1,000 characters"):
        load_table(path)


def test_values_are_kept_exactly_as_float32_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(20, 4)) * 1e3
    path = tmp_path / "t.csv"
    np.savetxt(path, table, delimiter=",", header="a,b,c,d", comments="")
    x, _ = load_table(path)
    np.testing.assert_array_equal(x.numpy(), table.astype(np.float32))


def test_a_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(ValueError, match="not a text table|not a number"):
        load_table(path)
