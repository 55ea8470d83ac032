# bash completion for conntrackd (ctools)           -*- shell-script -*-

_ctools_conntrackd()
{
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=${COMP_WORDS[COMP_CWORD-1]}

    case $prev in
        -C)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -c | -F | -R)
            COMPREPLY=($(compgen -W "ct expect" -- "$cur")); return ;;
        -i | -e)
            COMPREPLY=($(compgen -W "ct expect -x" -- "$cur")); return ;;
        -f)
            COMPREPLY=($(compgen -W "internal external" -- "$cur")); return ;;
        -s)
            COMPREPLY=($(compgen -W "network cache runtime link rsqueue queue process ct expect" -- "$cur"))
            return ;;
        --max-silence)
            return ;;
    esac
    COMPREPLY=($(compgen -W "-C -d -v -h -c -f -F -i -e -x -k -s -R -n -B -t --json --health --max-silence" -- "$cur"))
}
complete -F _ctools_conntrackd conntrackd
