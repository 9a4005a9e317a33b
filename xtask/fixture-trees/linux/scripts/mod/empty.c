/* SPDX-License-Identifier: GPL-2.0 */
/* As Linux: compiled with the kernel's own flags (for modpost). */
