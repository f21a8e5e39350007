//go:build amd64 && !purego

#include "textflag.h"

// func scanBlocks(s []byte, json bool) (newlines int, flagged bool)
// 64 bytes per step, SSE2 only (every amd64 processor has it). The '\n' count is kept per byte lane
// in X5 (PCMPEQB gives -1 where a byte matches, PSUBB adds 1) and summed into X6 by PSADBW every 63
// steps, before a lane (at most 4 per step) can overflow. X7 collects flagged bytes: with json, a
// byte < 0x20 other than '\n', >= 0x80, '"' or '\\' (PCMPGTB compares signed bytes, so 0x20 > b
// holds for b < 0x20 and for b >= 0x80 alike); without, a NUL or a byte >= 0x80 (its own high bit).
TEXT ·scanBlocks(SB), NOSPLIT, $0-41
	MOVQ    s_base+0(FP), SI
	MOVQ    s_len+8(FP), CX
	ANDQ    $~63, CX
	ADDQ    SI, CX
	MOVBLZX json+24(FP), DX
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
