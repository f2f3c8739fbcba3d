"""A JPEG photo as a phone writes it, and the checks that its metadata went: shared by
the page's tests (test_browser_attachments.py) and the CLI's (test_cli_attachments.py)."""

import io

from PIL import Image, ImageCms


def photo_with_metadata(progressive: bool = False) -> bytes:
    """Exif with GPS position, maker, model and Orientation (turned), XMP, a comment
    and an ICC colour profile."""
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4, y * 5, (x + y) * 2) for y in range(48) for x in range(64)])
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0110] = "Model 7"
    exif[0x0112] = 6  # turned 90 degrees: the viewer rotates it
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    image.save(
        out,
        "JPEG",
        exif=exif,
        icc_profile=srgb,
        comment=b"Alice's phone",
        xmp=b"<x:xmpmeta>Alice at home</x:xmpmeta>",
        quality=90,
        progressive=progressive,
    )
    return out.getvalue()


def assert_cleaned(received: bytes, original: bytes) -> None:
    """No location, camera, XMP or comment left; the same pixels, colours and turn."""
    before, after = Image.open(io.BytesIO(original)), Image.open(io.BytesIO(received))
    assert before.getexif().get_ifd(0x8825)  # there was a position to remove
    assert dict(after.getexif()) == {0x0112: 6}
    assert after.getexif().get_ifd(0x8825) == {}
    assert not {"xmp", "comment"} & after.info.keys()
    assert after.info["icc_profile"] == before.info["icc_profile"]
    assert after.tobytes() == before.tobytes()
    assert b"Alice" not in received and b"PhoneMaker" not in received
