"""Growing part sizes let a stream of unknown length reach 1 TiB within S3's limits."""

import pytest

from easybackup.storage.multipart import MAX_PARTS, MiB, part_size

GiB = 1024 * MiB
TiB = 1024 * GiB
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * GiB


def test_ten_thousand_parts_hold_at_least_one_tebibyte():
    assert sum(part_size(n) for n in range(1, MAX_PARTS + 1)) >= TiB


def test_every_part_is_within_s3_limits():
    sizes = [part_size(n) for n in range(1, MAX_PARTS + 1)]
    assert min(sizes) >= S3_MIN_PART
    assert max(sizes) <= S3_MAX_PART


def test_parts_start_at_16_mib_and_never_shrink():
    sizes = [part_size(n) for n in range(1, MAX_PARTS + 1)]
    assert sizes[0] == 16 * MiB
    assert all(a <= b for a, b in zip(sizes, sizes[1:], strict=False))


def test_small_streams_keep_the_memory_bound_small():
    # (concurrency 3 + 1 filling) x part size: 64 MiB for anything below the first step (~7.8 GiB).
    assert sum(part_size(n) for n in range(1, 501)) > 7 * GiB
    assert 4 * part_size(500) == 64 * MiB


def test_the_largest_part_keeps_the_memory_bound_near_one_gibibyte():
    assert 4 * part_size(MAX_PARTS) <= 1.5 * GiB


@pytest.mark.parametrize("number", [0, -1, MAX_PARTS + 1])
def test_part_numbers_outside_s3s_range_are_refused(number):
    with pytest.raises(ValueError):
        part_size(number)
