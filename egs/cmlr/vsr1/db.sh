# Corpus root of egs/cmlr/vsr1 (ESPnet convention); override from the environment, e.g.
# `CMLR=/data/CMLR ./run.sh`. Layout: vallr_pin/corpora/cmlr.py.
CMLR=${CMLR:-downloads/CMLR}                  # holds video/, text/ and train.csv, val.csv, test.csv
