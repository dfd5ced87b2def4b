; Blocked matrix multiply with bias, ReLU and requantization on the `small` config (1x4x4).
;
;   C[8x8] = min(rshr(max(A[8x8] @ W[8x8] + bias[8], 0), 2), 127)     (all int8 in DRAM)
;
; Data layout in DRAM (blocks of the 1x4x4 GEMM core):
;   A    INP element r*2 + kb  = A[r, 4kb : 4kb+4]              (8 rows x 2 input blocks)
;   W    WGT element nb*2 + kb = W[4kb : 4kb+4, 4nb : 4nb+4]^T  ([out][in] per block)
;   bias ACC element nb        = bias[4nb : 4nb+4]
;   C    OUT element r*2 + nb  = C[r, 4nb : 4nb+4]
.config small

.segment A    input   inp 16
.segment W    weights wgt 4
.segment bias weights acc 2
.segment C    output  out 16

; One output block: accumulate over the two input blocks kb = 0, 1.
; The GEMM loops add r*2 (iter_out) and nb (iter_in) to dst, r*2 to src, nb*2 to wgt.
.kernel gemm_row
    uop 0 0 0
    uop 0 1 1
.end

; One ACC row for the tensor ALU, stepped over all 16 output blocks by the loop.
.kernel acc_row
    uop 0 0
.end

; load stage: all of A and W fit the buffers at once; tell compute when W has landed.
load inp sram=0 dram=A y=1 x=16 stride=16
load wgt sram=0 dram=W y=1 x=4 stride=4 push=next

; compute stage: kernels, bias broadcast to every row (stride 0), then GEMM and the ALU chain.
load uop sram=0 kernel=gemm_row
load uop sram=2 kernel=acc_row
load acc sram=0 dram=bias y=8 x=2 stride=0
gemm uop=0:2 iter=8,2 dst=2,1 src=2,0 wgt=0,2 pop=prev
alu max  uop=2:3 iter=16,1 dst=1,0 src=1,0 imm=0
alu rshr uop=2:3 iter=16,1 dst=1,0 src=1,0 imm=2
alu min  uop=2:3 iter=16,1 dst=1,0 src=1,0 imm=127 push=next

; store stage: wait for the ALU, then write all 16 OUT elements.
store out sram=0 dram=C y=1 x=16 stride=16 pop=prev
finish
