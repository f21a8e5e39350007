//go:build amd64 && !purego

#include "textflag.h"

// func plainBlocks(s []byte) bool
// A byte needs escaping when it is < 0x20 (except '\n'), >= 0x80, '"' or '\\'. PCMPGTB compares
// signed bytes, so 0x20 > b holds for b < 0x20 and for b >= 0x80 alike. BLOCK ORs into X7 the
// bytes of one 16-byte block that need escaping: (b < 0x20 or b >= 0x80) and not '\n', '"', '\\'.
TEXT ·plainBlocks(SB), NOSPLIT, $0-25
	MOVQ s_base+0(FP), SI
	MOVQ s_len+8(FP), CX
	ANDQ $~63, CX
	ADDQ SI, CX
	MOVQ $0x2020202020202020, AX
	MOVQ AX, X8
	PUNPCKLQDQ X8, X8
	MOVQ $0x0a0a0a0a0a0a0a0a, AX
	MOVQ AX, X9
	PUNPCKLQDQ X9, X9
	MOVQ $0x2222222222222222, AX
	MOVQ AX, X10
	PUNPCKLQDQ X10, X10
	MOVQ $0x5c5c5c5c5c5c5c5c, AX
	MOVQ AX, X11
	PUNPCKLQDQ X11, X11
	PXOR X7, X7

loop:
	CMPQ SI, CX
	JAE  done

#define BLOCK(off)          \
	MOVOU   off(SI), X0        \
	MOVO    X8, X1             \
	PCMPGTB X0, X1             \
	MOVO    X0, X2             \
	PCMPEQB X9, X2             \
	PANDN   X1, X2             \
	MOVO    X0, X3             \
	PCMPEQB X10, X3            \
	PCMPEQB X11, X0            \
	POR     X2, X7             \
	POR     X3, X7             \
	POR     X0, X7

	BLOCK(0)
	BLOCK(16)
	BLOCK(32)
	BLOCK(48)
	ADDQ     $64, SI
	PMOVMSKB X7, AX
	TESTL    AX, AX
	JZ       loop
	MOVB     $0, ret+24(FP)
	RET

done:
	MOVB $1, ret+24(FP)
	RET
