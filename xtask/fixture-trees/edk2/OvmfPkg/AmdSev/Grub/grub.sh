#!/bin/sh
# grub.sh: in edk2 this builds the grub.efi that AmdSevX64.fdf embeds.
# The snp-build fixture does not build grub: put any file (an empty one is
# enough) at OvmfPkg/AmdSev/Grub/grub.efi.
echo "grub.sh (fixture): create OvmfPkg/AmdSev/Grub/grub.efi yourself" >&2
exit 1
