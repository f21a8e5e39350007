//go:build amd64 && !purego

#include "textflag.h"

// ARGS loads the arguments of scanBlocksSSE2 and scanBlocksAVX2: SI the first byte of s, CX the end
// of its whole 64-byte steps, DX json.
#define ARGS                  \
	MOVQ    s_base+0(FP), SI  \
	MOVQ    s_len+8(FP), CX   \
	ANDQ    $~63, CX          \
	ADDQ    SI, CX            \
	MOVBLZX json+24(FP), DX

// func scanBlocksSSE2(s []byte, json bool) (newlines int, flagged bool)
// 64 bytes per step, SSE2 only (every amd64 processor has it). The '\n' count is kept per byte lane
// in X5 (PCMPEQB gives -1 where a byte matches, PSUBB adds 1) and summed into X6 by PSADBW every 63
// steps, before a lane (at most 4 per step) can overflow. X7 collects flagged bytes: with json, a
// byte < 0x20 other than '\n', >= 0x80, '"' or '\\' (PCMPGTB compares signed bytes, so 0x20 > b
// holds for b < 0x20 and for b >= 0x80 alike); without, a NUL or a byte >= 0x80 (its own high bit).
TEXT ·scanBlocksSSE2(SB), NOSPLIT, $0-41
	ARGS
	MOVQ    $0x2020202020202020, AX
	MOVQ    AX, X8
	PUNPCKLQDQ X8, X8
	MOVQ    $0x0a0a0a0a0a0a0a0a, AX
	MOVQ    AX, X9
	PUNPCKLQDQ X9, X9
	MOVQ    $0x2222222222222222, AX
	MOVQ    AX, X10
	PUNPCKLQDQ X10, X10
	MOVQ    $0x5c5c5c5c5c5c5c5c, AX
	MOVQ    AX, X11
	PUNPCKLQDQ X11, X11
	PXOR    X12, X12
	PXOR    X5, X5
	PXOR    X6, X6
	PXOR    X7, X7
	XORQ    BX, BX

#define COUNT          \
	MOVO    X0, X1     \
	PCMPEQB X9, X1     \
	PSUBB   X1, X5

// X1 holds the '\n' mask of X0 (COUNT).
#define JSONBLOCK(off) \
	MOVOU   off(SI), X0 \
	COUNT              \
	MOVO    X8, X2     \
	PCMPGTB X0, X2     \
	PANDN   X2, X1     \
	MOVO    X0, X3     \
	PCMPEQB X10, X3    \
	PCMPEQB X11, X0    \
	POR     X1, X7     \
	POR     X3, X7     \
	POR     X0, X7

#define RAWBLOCK(off)  \
	MOVOU   off(SI), X0 \
	COUNT              \
	POR     X0, X7     \
	PCMPEQB X12, X0    \
	POR     X0, X7

#define FLUSH          \
	PSADBW  X12, X5    \
	PADDQ   X5, X6     \
	PXOR    X5, X5     \
	XORQ    BX, BX

	TESTQ DX, DX
	JZ    rawloop

jsonloop:
	CMPQ SI, CX
	JAE  done
	JSONBLOCK(0)
	JSONBLOCK(16)
	JSONBLOCK(32)
	JSONBLOCK(48)
	ADDQ $64, SI
	INCQ BX
	CMPQ BX, $63
	JB   jsonloop
	FLUSH
	JMP  jsonloop

rawloop:
	CMPQ SI, CX
	JAE  done
	RAWBLOCK(0)
	RAWBLOCK(16)
	RAWBLOCK(32)
	RAWBLOCK(48)
	ADDQ $64, SI
	INCQ BX
	CMPQ BX, $63
	JB   rawloop
	FLUSH
	JMP  rawloop

done:
	FLUSH
	MOVQ     X6, AX
	PSRLDQ   $8, X6
	MOVQ     X6, CX
	ADDQ     CX, AX
	MOVQ     AX, newlines+32(FP)
	PMOVMSKB X7, AX
	TESTL    AX, AX
	SETNE    flagged+40(FP)
	RET

// func scanBlocksAVX2(s []byte, json bool) (newlines int, flagged bool)
// scanBlocksSSE2 in 32-byte registers, 64 bytes per step. The '\n' count per byte lane (Y5, at most
// 2 per step) is summed into Y6 by VPSADBW every 127 steps. Without json, no byte is compared for
// flags: Y7 keeps the least and Y8 the greatest byte seen in each lane (a NUL shows as a 0 in Y7, a
// byte >= 0x80 as a high bit in Y8). With json, Y7 collects flagged bytes as in scanBlocksSSE2.
TEXT ·scanBlocksAVX2(SB), NOSPLIT, $0-41
	ARGS
	MOVQ         $0x0a0a0a0a0a0a0a0a, AX
	MOVQ         AX, X9
	VPBROADCASTQ X9, Y9
	VPXOR        Y12, Y12, Y12
	VPXOR        Y5, Y5, Y5
	VPXOR        Y6, Y6, Y6
	XORQ         BX, BX
	TESTQ        DX, DX
	JNZ          avxjson

	VPCMPEQB Y7, Y7, Y7 // least byte so far: 0xff
	VPXOR    Y8, Y8, Y8 // greatest: 0

avxraw:
	CMPQ     SI, CX
	JAE      avxrawdone
	VMOVDQU  (SI), Y0
	VMOVDQU  32(SI), Y1
	VPCMPEQB Y9, Y0, Y2
	VPCMPEQB Y9, Y1, Y3
	VPSUBB   Y2, Y5, Y5
	VPSUBB   Y3, Y5, Y5
	VPMINUB  Y0, Y7, Y7
	VPMAXUB  Y0, Y8, Y8
	VPMINUB  Y1, Y7, Y7
	VPMAXUB  Y1, Y8, Y8
	ADDQ     $64, SI
	INCQ     BX
	CMPQ     BX, $127
	JB       avxraw
	VPSADBW  Y12, Y5, Y5
	VPADDQ   Y5, Y6, Y6
	VPXOR    Y5, Y5, Y5
	XORQ     BX, BX
	JMP      avxraw

avxrawdone:
	VPCMPEQB Y12, Y7, Y7 // 0xff where a lane saw a NUL
	VPOR     Y8, Y7, Y7  // high bit also where a lane saw a byte >= 0x80
	JMP      avxdone

avxjson:
	MOVQ         $0x2020202020202020, AX
	MOVQ         AX, X13
	VPBROADCASTQ X13, Y13
	MOVQ         $0x2222222222222222, AX
	MOVQ         AX, X10
	VPBROADCASTQ X10, Y10
	MOVQ         $0x5c5c5c5c5c5c5c5c, AX
	MOVQ         AX, X11
	VPBROADCASTQ X11, Y11
	VPXOR        Y7, Y7, Y7

#define AVXJSON(off) \
	VMOVDQU  off(SI), Y0 \
	VPCMPEQB Y9, Y0, Y1  \
	VPSUBB   Y1, Y5, Y5  \
	VPCMPGTB Y0, Y13, Y2 \
	VPANDN   Y2, Y1, Y2  \
	VPCMPEQB Y10, Y0, Y3 \
	VPCMPEQB Y11, Y0, Y4 \
	VPOR     Y3, Y2, Y2  \
	VPOR     Y4, Y2, Y2  \
	VPOR     Y2, Y7, Y7

avxjsonloop:
	CMPQ    SI, CX
	JAE     avxdone
	AVXJSON(0)
	AVXJSON(32)
	ADDQ    $64, SI
	INCQ    BX
	CMPQ    BX, $127
	JB      avxjsonloop
	VPSADBW Y12, Y5, Y5
	VPADDQ  Y5, Y6, Y6
	VPXOR   Y5, Y5, Y5
	XORQ    BX, BX
	JMP     avxjsonloop

avxdone:
	VPSADBW      Y12, Y5, Y5
	VPADDQ       Y5, Y6, Y6
	VEXTRACTI128 $1, Y6, X0
	VPADDQ       X0, X6, X6
	VMOVQ        X6, AX
	VPEXTRQ      $1, X6, CX
	ADDQ         CX, AX
	MOVQ         AX, newlines+32(FP)
	VPMOVMSKB    Y7, AX
	TESTL        AX, AX
	SETNE        flagged+40(FP)
	VZEROUPPER
	RET
