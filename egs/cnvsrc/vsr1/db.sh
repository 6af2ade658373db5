# Corpus roots of egs/cnvsrc/vsr1 (ESPnet convention: one variable per corpus). Each can be overridden from
# the environment, e.g. `CNVSRC=/data/CNVSRC ./run.sh`. Layouts: vallr_pin/corpora/cnvsrc.py.
CNVSRC=${CNVSRC:-downloads/CNVSRC}            # holds cnvsrc-multi/ and cnvsrc-single/ (dev/, eval/)
CNCVS=${CNCVS:-${CNVSRC}/cncvs}               # holds news/ and speech/
CNCVS2_P1=${CNCVS2_P1:-${CNVSRC}/cncvs2_p1}   # CN-CVS2-P1, per-speaker <spk>/video/ layout
CNCVS3=${CNCVS3:-${CNVSRC}/cncvs3}            # CN-CVS3, per-speaker <spk>/video/ layout
