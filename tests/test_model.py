from ctools.model import AF_INET, Entry, Tuple


def test_entry_absent_attributes_are_none():
    e = Entry(Tuple(AF_INET, "1.1.1.1", "2.2.2.2", 6, 10, 20))
    assert e.mark is None and e.status is None
    assert e.family == AF_INET and e.proto == 6


def test_tuple_equality_and_hash():
    a = Tuple(AF_INET, "1.1.1.1", "2.2.2.2", 17, 1, 2)
    b = Tuple(AF_INET, "1.1.1.1", "2.2.2.2", 17, 1, 2)
    assert a == b and hash(a) == hash(b)
    assert a != Tuple(AF_INET, "1.1.1.1", "2.2.2.2", 17, 1, 3)
    assert Entry(a).as_dict() == {"orig": {"family": AF_INET, "src": "1.1.1.1",
                                           "dst": "2.2.2.2", "proto": 17, "sport": 1, "dport": 2}}
