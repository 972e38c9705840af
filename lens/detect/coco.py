"""COCO class names, one spelling for every backend (ultralytics' spelling)."""

from __future__ import annotations

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# The TensorFlow object-detection models number COCO's classes 1..90 with ten ids unused
# (categories dropped from the released annotations); these are the used ones, in order.
_TF_UNUSED = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
TF_ID_TO_INDEX = {tf_id: i for i, tf_id in enumerate(t for t in range(1, 91) if t not in _TF_UNUSED)}
assert len(TF_ID_TO_INDEX) == len(COCO80)
