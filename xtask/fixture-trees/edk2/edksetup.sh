#
# edksetup.sh: set up the build environment of the snp-build fixture edk2
# (not edk2). Like edk2's, it must be SOURCED by bash:
#
#   source edksetup.sh [--reconfig]
#
# It sets and exports WORKSPACE (the tree, unless WORKSPACE is already set:
# edk2 keeps a WORKSPACE from the environment, and so does this), then
# BaseTools/BuildEnv exports EDK_TOOLS_PATH and CONF_PATH, copies the
# templates of BaseTools/Conf/ into Conf/ (all of them again with
# --reconfig) and puts BaseTools/BinWrappers/PosixLike (where `build` is)
# on PATH.

# Executed rather than sourced: `return` fails outside a sourced script.
if ! (return 0 2>/dev/null); then
  echo "edksetup.sh: this script must be sourced, not executed:" >&2
  echo "  run 'source edksetup.sh [--reconfig]' in bash" >&2
  exit 1
fi

if [ -z "$BASH_VERSION" ]; then
  echo "edksetup.sh: must be sourced by bash" >&2
  return 1
fi

function HelpMsg()
{
  echo "Usage: $SCRIPTNAME [Options]"
  echo
  echo "The system environment variable, WORKSPACE, is always set to the current"
  echo "working directory."
  echo
  echo "Options: "
  echo "  --help, -h, -?        Print this help screen and exit."
  echo
  echo "  --reconfig            Overwrite the WORKSPACE/Conf/*.txt files with the"
  echo "                        template files from the BaseTools/Conf directory."
  echo
}

function SetWorkspace()
{
  # If WORKSPACE is already set, then we can return right now
  export PYTHONHASHSEED=1
  if [ -n "$WORKSPACE" ]
  then
    return 0
  fi

  # Check for BaseTools/BuildEnv before dirtying the user's environment.
  if [ ! -f BaseTools/BuildEnv ] && [ -z "$EDK_TOOLS_PATH" ]
  then
    echo BaseTools not found in your tree, and EDK_TOOLS_PATH is not set.
    echo Please point EDK_TOOLS_PATH at the directory that contains
    echo the EDK2 BuildEnv script.
    return 1
  fi

  # Set $WORKSPACE
  export WORKSPACE=$PWD
  return 0
}

function SetupEnv()
{
  if [ -n "$EDK_TOOLS_PATH" ]
  then
    . "$EDK_TOOLS_PATH/BuildEnv"
  elif [ -f "$WORKSPACE/BaseTools/BuildEnv" ]
  then
    . "$WORKSPACE/BaseTools/BuildEnv"
  elif [ -n "$PACKAGES_PATH" ]
  then
    for DIR in ${PACKAGES_PATH//:/ }; do
      if [ -f "$DIR/BaseTools/BuildEnv" ]; then
        export EDK_TOOLS_PATH=$DIR/BaseTools
        . "$DIR/BaseTools/BuildEnv"
        break
      fi
    done
  else
    echo BaseTools not found in your tree, and EDK_TOOLS_PATH is not set.
    echo Please check that WORKSPACE or PACKAGES_PATH is not set incorrectly
    echo in your shell, or point EDK_TOOLS_PATH at the directory that contains
    echo the EDK2 BuildEnv script.
    return 1
  fi
}

SCRIPTNAME="edksetup.sh"
RECONFIG=FALSE

for arg in "$@"
do
  case "$arg" in
    --reconfig)
      RECONFIG=TRUE
      export RECONFIG
      ;;
    *)
      HelpMsg
      return 1
      ;;
  esac
done

SetWorkspace && SetupEnv
result=$?
unset SCRIPTNAME RECONFIG
return $result
