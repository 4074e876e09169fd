from adapter.id_generator import UuidGenerator


def test_uuid_generator_makes_version_4_ids() -> None:
    assert UuidGenerator().new().version == 4


def test_uuid_generator_makes_a_new_id_each_time() -> None:
    ids = UuidGenerator()

    assert ids.new() != ids.new()
