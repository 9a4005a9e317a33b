/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Fixture kernel entry code: an assembler source, as Linux has many. Its
 * debug information records the directory it was assembled in unless the
 * compiler driver maps it (KCFLAGS never reaches .S files).
 */
	.text
	.globl	fixture_startup_64
	.type	fixture_startup_64, @function
fixture_startup_64:
	ret
	.size	fixture_startup_64, .-fixture_startup_64
	.section .note.GNU-stack,"",@progbits
