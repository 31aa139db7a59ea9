"""Image and video I/O for the ffkit runtime (OpenCV for images, PyAV for video).

All pixel arrays are numpy ``uint8`` in OpenCV's **BGR** channel order, shaped
``(height, width, 3)``. Videos are streamed frame by frame; nothing holds a whole
video in memory. Outputs are written to a temp file in the target folder and
renamed into place only on success.

The package (import everything from here)::

    common     MediaError, image/video suffixes, input checks, temp output paths
    images     read_image, write_image
    video_in   VideoInfo, probe_video, iter_frames
    video_out  VideoWriter (codec fallback, audio copy / re-encode)
"""

from .common import IMAGE_SUFFIXES, VIDEO_SUFFIXES, MediaError, is_image_path, is_video_path
from .images import MAX_IMAGE_PIXELS, Picture, read_image, read_picture, write_image, write_picture
from .video_in import VideoInfo, iter_frames, probe_video
from .video_out import VideoWriter

__all__ = [
    "MAX_IMAGE_PIXELS", "Picture", "read_picture", "write_picture",
    "MediaError", "VideoInfo", "VideoWriter", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES",
    "read_image", "write_image", "is_image_path", "is_video_path",
    "probe_video", "iter_frames",
]
