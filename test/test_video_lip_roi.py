"""Stage 1 building blocks on a real photographed face: decode + resample, landmarks, aligned mouth crop."""

import numpy as np
import pytest

from video_testdata import apply_affine, astronaut_rgb, mouth_geometry, write_astronaut_video, write_frames_video

from vallr_pin.video.decode import VideoReadError, read_video, resample_indices, rgb_to_grey
from vallr_pin.video.landmarks import get_detector, interpolate_missing, smooth
from vallr_pin.video.lip_roi import crop_mouth_rois

ROI = 96
CENTRE = (ROI - 1) / 2.0


@pytest.fixture(scope="module")
def photo_landmarks():
    """5 points of the still photo (512x512), found by FaceMesh on the photo itself."""
    det = get_detector("mediapipe")
    lm = det.detect(astronaut_rgb()[None])[0]
    det.close()
    assert np.isfinite(lm).all(), "FaceMesh found no face on skimage's astronaut photo"
    return lm


@pytest.fixture(scope="module")
def moving_face(tmp_path_factory, photo_landmarks):
    """A 30 fps clip (36 frames) of the moving face, decoded to 25 fps, with the true mouth corners per frame."""
    path = tmp_path_factory.mktemp("video") / "astronaut_30fps.mp4"
    warps = write_astronaut_video(path, num_frames=36, fps=30.0, size=320)
    frames = read_video(path)
    idx = resample_indices(36, 30.0, 25.0)
    true_corners = np.stack([apply_affine(warps[i], photo_landmarks[3:5]) for i in idx])
    return frames, true_corners


def test_resample_nearest_frame():
    assert resample_indices(30, 30.0, 25.0).tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 28, 29]
    assert resample_indices(20, 20.0, 25.0).tolist()[:6] == [0, 1, 2, 2, 3, 4]
    assert resample_indices(7, 25.0).tolist() == list(range(7))
    assert len(resample_indices(250, 29.97, 25.0)) == 209  # duration kept: 8.34 s


def test_decode_resamples_to_25fps(moving_face):
    frames, _ = moving_face
    assert frames.shape == (30, 320, 320, 3) and frames.dtype == np.uint8  # 36 frames at 30 fps = 1.2 s


def test_roi_centred_on_mouth_in_every_frame(moving_face):
    """The true mouth corners (photo landmarks moved by the known warp) land on the crop centre, level, at the
    same width in every frame, although the head drifts, zooms and rotates by +-8 degrees."""
    frames, true_corners = moving_face
    lm = get_detector("mediapipe").detect(frames)
    assert np.isfinite(lm).all()
    # Detected mouth corners agree with the truth (the detector works on this clip at all).
    assert np.abs(lm[:, 3:5] - true_corners).max() < 6.0

    rois, tf = crop_mouth_rois(rgb_to_grey(frames), lm, roi_size=ROI, mouth_width_frac=0.45, return_transforms=True)
    assert rois.shape == (30, ROI, ROI) and rois.dtype == np.uint8
    widths = []
    for t in range(len(frames)):
        for corners in (true_corners[t], lm[t, 3:5]):
            mid, width, angle = mouth_geometry(apply_affine(tf[t], corners))
            assert np.abs(mid - CENTRE).max() < 3.0, f"frame {t}: mouth midpoint at {mid} in the crop"
            assert abs(angle) < 3.0, f"frame {t}: mouth line tilted {angle:.1f} deg: head rotation not removed"
        widths.append(width)
    frac = np.array(widths) / ROI
    # Same zoom in every frame (zoom of the clip removed) ...
    assert frac.max() / frac.min() < 1.06
    # ... and it is the configured fraction of the crop width (median over the clip, true corners).
    assert np.median(frac) == pytest.approx(0.45, rel=0.04)
    # The crop really shows a mouth: dark lip gap / teeth contrast in the centre rows, not flat skin.
    centre_band = rois[:, ROI // 2 - 8:ROI // 2 + 8, ROI // 4:3 * ROI // 4].astype(float)
    assert centre_band.std(axis=(1, 2)).min() > 15


def test_crop_does_not_jump_at_the_clip_ends(tmp_path, photo_landmarks):
    """Where the face moves, the landmark smoothing must not lag it at the first and last frames: measured on
    this 25 fps clip, a truncated moving average moved the mouth 0.6 px in the crop from the second-last to the
    last frame (interior steps: 0.04 px), and put it 1.6 px off centre."""
    warps = write_astronaut_video(tmp_path / "a.mp4", num_frames=36, fps=25.0, size=320)
    frames = read_video(tmp_path / "a.mp4")
    true_corners = np.stack([apply_affine(w, photo_landmarks[3:5]) for w in warps])
    lm = get_detector("mediapipe").detect(frames)
    _, tf = crop_mouth_rois(rgb_to_grey(frames), lm, roi_size=ROI, return_transforms=True)
    mid = np.stack([mouth_geometry(apply_affine(tf[t], true_corners[t]))[0] for t in range(len(tf))])
    step = np.linalg.norm(np.diff(mid, axis=0), axis=1)
    assert step[[0, 1, -2, -1]].max() < 0.35, step
    assert np.abs(mid - CENTRE).max() < 1.0


def test_mouth_width_fraction_sets_zoom(moving_face):
    frames, true_corners = moving_face
    lm = get_detector("mediapipe").detect(frames)
    grey = rgb_to_grey(frames)
    fracs = {}
    for cfg in (0.30, 0.45):
        _, tf = crop_mouth_rois(grey, lm, roi_size=ROI, mouth_width_frac=cfg, return_transforms=True)
        fracs[cfg] = np.median([mouth_geometry(apply_affine(tf[t], true_corners[t]))[1] / ROI for t in range(len(tf))])
    assert fracs[0.30] / fracs[0.45] == pytest.approx(0.30 / 0.45, rel=0.02)


def test_detect_every_k_keeps_roi_on_mouth(moving_face):
    """The speed option (FaceMesh on every 3rd frame, interpolation between) still centres the crop."""
    frames, true_corners = moving_face
    lm = get_detector("mediapipe", detect_every=3, max_side=256).detect(frames)
    assert np.isfinite(lm).all()
    _, tf = crop_mouth_rois(rgb_to_grey(frames), lm, roi_size=ROI, return_transforms=True)
    for t in range(len(tf)):
        mid, _, angle = mouth_geometry(apply_affine(tf[t], true_corners[t]))
        assert np.abs(mid - CENTRE).max() < 3.5 and abs(angle) < 3.5


def test_no_face_gives_nan_and_none():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    lm = get_detector("mediapipe").detect(noise)
    assert lm.shape == (4, 5, 2) and np.isnan(lm).all()
    assert interpolate_missing(lm) is None


def test_interpolate_and_smooth():
    lm = np.full((6, 5, 2), np.nan, dtype=np.float32)
    lm[1], lm[4] = 10.0, 40.0
    filled = interpolate_missing(lm)
    assert filled[:, 0, 0].tolist() == [10, 10, 20, 30, 40, 40]  # edges held, gaps linear
    ramp = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 5, 2), np.float32)
    # a face moving steadily is followed exactly, to the first and last frame (a truncated average lags it there)
    for window in (5, 4, 3):
        assert np.allclose(smooth(ramp, window), ramp, atol=1e-5), window
    assert np.allclose(smooth(ramp[:3], 5), ramp[:3], atol=1e-5)  # clip shorter than the window
    jitter = ramp + np.random.default_rng(0).normal(0, 2, ramp.shape).astype(np.float32)
    sm = smooth(jitter, 5)
    assert np.abs(sm - ramp)[2:-2].mean() < np.abs(jitter - ramp)[2:-2].mean()
    assert np.abs(sm - ramp)[[0, 1, -2, -1]].mean() < np.abs(jitter - ramp)[[0, 1, -2, -1]].mean()
    # the last three (first three) frames lie on one line: no step at the clip ends
    assert np.allclose(np.diff(sm[-3:], 2, axis=0), 0, atol=1e-4) and np.allclose(np.diff(sm[:3], 2, axis=0), 0,
                                                                                   atol=1e-4)


def test_unreadable_videos_raise_with_path(tmp_path):
    good = tmp_path / "good.mp4"
    write_frames_video(good, np.zeros((5, 64, 64, 3), np.uint8))
    data = good.read_bytes()
    cases = {"truncated.mp4": data[: len(data) // 2], "garbage.mp4": np.random.default_rng(1).bytes(4000), "empty.mp4": b""}
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(VideoReadError) as e:
            read_video(tmp_path / name)
        assert name in str(e.value) and e.value.reason
    with pytest.raises(VideoReadError, match="not found"):
        read_video(tmp_path / "missing.mp4")


def _decord_frames(path):
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    return np.stack([vr.next().asnumpy() for _ in range(len(vr))])


def test_frames_equal_decords_to_the_byte(tmp_path):
    """Stage 1's frames come from OpenCV's FFmpeg backend now (decord decodes ahead into unbounded memory); they
    must be decord's pixels exactly, so features cut before and after the change are the same, in every
    container/codec this OpenCV can write (mp4v, MJPEG, VP8, FFV1, raw I420) and under rotation metadata."""
    import cv2

    from video_testdata import set_mp4_rotation
    from vallr_pin.video.decode import VideoClip

    clips = []
    src = tmp_path / "src.mp4"
    write_astronaut_video(src, num_frames=12, size=96, width=128)
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in _decord_frames(src)]
    for fourcc, ext in (("MJPG", "avi"), ("VP80", "webm"), ("FFV1", "mkv"), ("I420", "avi")):
        path = tmp_path / f"c_{fourcc}.{ext}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (128, 96))
        if writer.isOpened():
            for f in bgr:
                writer.write(f)
            writer.release()
            clips.append(path)
    assert len(clips) >= 3, clips  # the pinned opencv-contrib-python writes all four
    clips.append(src)
    for degrees in (90, 180):
        path = tmp_path / f"rot{degrees}.mp4"
        write_astronaut_video(path, num_frames=6, size=96, width=128)
        set_mp4_rotation(str(path), degrees)
        clips.append(path)
    for path in clips:
        ours = np.concatenate(list(VideoClip(path).iter_chunks(5)))
        ref = _decord_frames(path)
        assert ours.shape == ref.shape and np.array_equal(ours, ref), path.name


class _CountingCapture:
    """cv2.VideoCapture that counts the frames decoded (read) so far, over all instances."""

    reads = 0
    real = None  # the real cv2.VideoCapture

    def __init__(self, *args):
        self._cap = _CountingCapture.real(*args)

    def __getattr__(self, name):
        return getattr(self._cap, name)

    def read(self):
        ok, frame = self._cap.read()
        _CountingCapture.reads += int(ok)
        return ok, frame


@pytest.fixture
def counting_capture(monkeypatch):
    import cv2

    monkeypatch.setattr(_CountingCapture, "real", cv2.VideoCapture)
    monkeypatch.setattr(_CountingCapture, "reads", 0)
    monkeypatch.setattr(cv2, "VideoCapture", _CountingCapture)
    return _CountingCapture


def test_frames_are_decoded_only_when_their_chunk_is_asked_for(tmp_path, counting_capture):
    """What bounds stage 1's memory: no frame is decoded before the chunk that needs it is asked for, so a slow
    consumer holds one chunk whatever the clip's length (decord's reader had decoded up to the whole clip ahead,
    into its own memory, while the detector worked on the first chunk)."""
    from vallr_pin.video.decode import VideoClip

    path = tmp_path / "clip30.mp4"
    write_astronaut_video(path, num_frames=60, fps=30.0, size=64)
    clip = VideoClip(path)
    assert counting_capture.reads == 0  # opening decodes nothing
    chunks = clip.iter_chunks(8)
    for n, chunk in enumerate(chunks):
        last_source = clip.indices[min(8 * (n + 1), clip.num_frames) - 1]
        assert counting_capture.reads == last_source + 1, (n, counting_capture.reads)
    assert counting_capture.reads == 60


def test_stage_1_holds_a_bounded_number_of_frames(tmp_path, counting_capture, monkeypatch):
    """Through the whole per-utterance step: the detector gets the clip chunk by chunk while it is being
    decoded (never more than one chunk decoded ahead of it), and the grey frames that wait for the crop leave
    memory for the spool's temporary file once past its limit."""
    from vallr_pin.video import decode
    from vallr_pin.video.landmarks import LandmarkDetector
    from vallr_pin.video.pipeline import RoiConfig, extract_utterance

    face = np.array([[20, 24], [44, 24], [32, 36], [24, 48], [40, 48]], dtype=np.float32)

    class Recording(LandmarkDetector):
        def __init__(self):
            self.ahead = []  # per chunk: frames decoded but not yet handed over, once this chunk arrived

        def detect(self, frames_rgb):
            return self.detect_stream([frames_rgb])

        def detect_stream(self, chunks):
            n = 0
            for chunk in chunks:
                n += len(chunk)
                self.ahead.append(counting_capture.reads - n)
                assert len(chunk) <= 8
            return np.repeat(face[None], n, axis=0)

    rolled = []
    real_spool = decode.FrameSpool

    class WatchedSpool(real_spool):
        def close(self):
            rolled.append(self._file._rolled)  # SpooledTemporaryFile: True once it went to a real file
            super().close()

    monkeypatch.setattr(decode, "FrameSpool", WatchedSpool)
    monkeypatch.setattr(decode, "SPOOL_MEMORY_BYTES", 64 * 64 * 20)  # 20 grey frames of 64x64
    path = tmp_path / "clip.mp4"
    write_astronaut_video(path, num_frames=100, size=64)
    det = Recording()
    rois = extract_utterance("u", str(path), RoiConfig(chunk_size=8), det)
    assert rois.shape == (100, 96 * 96)
    assert len(det.ahead) == 13 and max(det.ahead) == 0, det.ahead
    assert rolled == [True]
