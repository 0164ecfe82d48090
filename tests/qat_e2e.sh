#!/usr/bin/env bash
# Quantization-aware training end to end under the real mpirun:
#   - np = 1, 2, 3 give the same weights (abs 1e-4) and the same observer
#     state (relative 1e-4) after K steps: fake-quant ranges are reduced
#     over ranks before the moving average uses them;
#   - checkpoint + --resume reproduces an uninterrupted run bit for bit,
#     observer state and int8 model included;
#   - the int8 model QAT writes works with `distq eval` and `distq bench`;
#   - the Linear(1024, 1000) example under mpirun -np 2;
#   - misuse: an fp32 checkpoint resumed by `distq qat`; a resume whose config
#     sets the other reduce_range than the checkpoint was trained with; 8-bit
#     activations with a test set on a CPU without VNNI (refused up front).
# usage: qat_e2e.sh PATH/TO/distq
set -u
DISTQ=$1
source "$(dirname "$0")/e2e_lib.sh" qat

fmnist_fixture

# write_config NAME EPOCHS SEED
write_config() {
  training_config "$1" "$2" "$3" 0.02 <<INI
[qat]
freeze_bn_after = 5
freeze_observers_after = 6
reduce_range = on
[output]
quantized = $T/q_$1.h5
INI
}

np_agree qat
for np in 1 2 3; do check "qat np=$np wrote its int8 model" "[ -f $T/q_np$np.h5 ]"; done
for np in 2 3; do
  h5diff -p 1e-4 "$T/ckpt_np1.h5" "$T/ckpt_np$np.h5" /qat/state /qat/state >"$T/out" 2>&1
  check "np=$np observer state == np=1 (relative 1e-4)" "[ $? -eq 0 ]"
done
h5diff -q "$T/m.h5" "$T/out_np1.h5" /tensors /tensors >/dev/null 2>&1
check "QAT changed the weights (the comparison can fail)" "[ $? -ne 0 ]"

# uninterrupted 2 epochs (BN and observers freeze in epoch 2) vs 1 epoch + resume
resume_pair qat
h5diff "$T/ckpt_full.h5" "$T/ckpt_part.h5" /qat/state /qat/state >"$T/out" 2>&1
check "resumed observer state == uninterrupted, bit for bit" "[ $? -eq 0 ]"
h5diff "$T/q_full.h5" "$T/q_part.h5" /quant /quant >"$T/out" 2>&1
check "resumed int8 model == uninterrupted, bit for bit" "[ $? -eq 0 ]"
# the checkpoint keeps its 7-bit activation grid: a config asking for 8 bits is refused
sed 's/^reduce_range = on/reduce_range = off/' "$T/part.ini" >"$T/part8.ini"
"$MPIEXEC" -np 2 "$DISTQ" qat "$T/part8.ini" --resume --epochs 3 >"$T/out" 2>&1
check "resume with another reduce_range fails naming the checkpoint" \
  "[ $? -ne 0 ] && grep -q 'ckpt_part.h5 was trained with reduce_range on; the config sets reduce_range = off' $T/out"
# 8-bit activations: without VNNI the job refuses before training (its int8 test
# could not run at the end); with VNNI it trains and tests
sed -e 's/^reduce_range = on/reduce_range = off/' -e "s|$T/out_part.h5|$T/out_8bit.h5|" \
    -e "s|$T/ckpt_part.h5|$T/ckpt_8bit.h5|" "$T/part.ini" >"$T/8bit.ini"
"$MPIEXEC" -np 2 "$DISTQ" qat "$T/8bit.ini" --max-steps 1 >"$T/out" 2>&1
rc=$?
check "reduce_range off: refused before training without VNNI, else trained and tested" \
  "if grep -q 'no VNNI on some rank' $T/out; then [ $rc -ne 0 ] && [ ! -e $T/ckpt_8bit.h5 ]; \
   else [ $rc -eq 0 ] && grep -q 'QAT int8' $T/out; fi"

# the QAT int8 model in the PTQ tools, unchanged
"$DISTQ" eval --model "$T/q_full.h5" --data "$T/test.h5" >"$T/out" 2>&1
check "distq eval on the QAT int8 model" "[ $? -eq 0 ] && grep -q 'accuracy: fp32' $T/out"
"$MPIEXEC" -np 2 "$DISTQ" bench --model "$T/q_full.h5" --batch 2 --min-iters 2 --min-time 0 --warmup 1 \
  --threads 1 >"$T/out" 2>&1
check "distq bench on the QAT int8 model under mpirun -np 2" "[ $? -eq 0 ] && grep -q 'int8' $T/out"

# the Linear(1024, 1000) QAT example, 2 ranks
"$DISTQ" model --arch linear --seed 1 -o "$T/lin.h5" >/dev/null
"$DISTQ" data --shape 1024 -n 64 --seed 6 --classes 1000 -o "$T/lin_train.h5" >/dev/null
cat > "$T/lin.ini" <<INI
[model]
path = $T/lin.h5
[train]
data = $T/lin_train.h5
test = $T/lin_train.h5
epochs = 3
batch_size = 16
lr = 0.05
momentum = 0.9
[qat]
freeze_observers_after = 8
[output]
quantized = $T/lin_q.h5
INI
"$MPIEXEC" -np 2 "$DISTQ" qat "$T/lin.ini" >"$T/out" 2>&1
check "Linear(1024, 1000) QAT on 2 ranks learns its training set" \
  "[ $? -eq 0 ] && grep -q 'epoch 3/3' $T/out && grep -Eq 'QAT int8 (9[0-9]|100)\.' $T/out"

# an fp32 checkpoint is not a QAT one
cat > "$T/fp.ini" <<INI
[model]
path = $T/m.h5
[train]
data = $T/train.h5
epochs = 1
batch_size = 24
checkpoint = $T/fp_ckpt.h5
INI
"$MPIEXEC" -np 2 "$DISTQ" train "$T/fp.ini" --max-steps 1 >/dev/null 2>&1
"$MPIEXEC" -np 2 "$DISTQ" qat "$T/fp.ini" --resume >"$T/out" 2>&1
check "qat --resume of an fp32 checkpoint fails naming it" "[ $? -ne 0 ] && grep -q 'fp_ckpt.h5: this is an fp32 checkpoint' $T/out"

finish
