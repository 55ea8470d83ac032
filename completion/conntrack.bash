# bash completion for conntrack (ctools)            -*- shell-script -*-

_ctools_conntrack()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local commands="-L --dump -G --get -D --delete -I --create -A --add -U --update
        -E --event -F --flush -C --counter -S --stats -R --load-file -h --help -V --version"
    local options="-s --src --orig-src -d --dst --orig-dst -r --reply-src -q --reply-dst
        -p --protonum -f --family -t --timeout -u --status -m --mark -c --secmark
        -w --zone --orig-zone --reply-zone -l --label --label-add --label-del
        -n --src-nat -g --dst-nat -j --any-nat -z --zero -e --event-mask -o --output
        -b --buffer-size -i --id --mask-src --mask-dst --tuple-src --tuple-dst"

    # Protocol options exist only once -p PROTO is on the line.
    local i proto=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -p | --protonum | --proto*) proto=${words[i+1]} ;;
        esac
    done
    case ${proto,,} in
        tcp | udp | udplite | sctp | dccp | 6 | 17 | 136 | 132 | 33)
            options+=" --sport --orig-port-src --dport --orig-port-dst --reply-port-src
                --reply-port-dst --mask-port-src --mask-port-dst --tuple-port-src
                --tuple-port-dst"
            case ${proto,,} in
                tcp | sctp | dccp | 6 | 132 | 33) options+=" --state" ;;
            esac
            case ${proto,,} in
                sctp | 132) options+=" --orig-vtag --reply-vtag" ;;
                dccp | 33) options+=" --role" ;;
            esac
            ;;
        icmp | 1) options+=" --icmp-type --icmp-code --icmp-id" ;;
        icmpv6 | 58) options+=" --icmpv6-type --icmpv6-code --icmpv6-id" ;;
        gre | 47) options+=" --srckey --dstkey --reply-key-src --reply-key-dst --mask-key-src --mask-key-dst --tuple-key-src --tuple-key-dst" ;;
    esac

    case $prev in
        -L | --dump)
            COMPREPLY=($(compgen -W "conntrack expect dying unconfirmed" -- "$cur")); return ;;
        -G | --get | -D | --delete | -I | --create | -E | --event | -F | --flush | \
        -C | --counter | -S | --stats)
            if [[ $cur != -* ]]; then
                COMPREPLY=($(compgen -W "conntrack expect" -- "$cur")); return
            fi ;;
        -R | --load-file)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -p | --protonum)
            COMPREPLY=($(compgen -W "tcp udp udplite sctp dccp icmp icmpv6 gre" -- "$cur"))
            return ;;
        -f | --family)
            COMPREPLY=($(compgen -W "ipv4 ipv6" -- "$cur")); return ;;
        -o | --output)
            local prefix=${cur%,*}
            [[ $prefix == "$cur" ]] && prefix="" || prefix+=","
            COMPREPLY=($(compgen -P "$prefix" -W "extended xml timestamp id ktimestamp labels userspace save" -- "${cur##*,}"))
            return ;;
        -u | --status)
            local prefix=${cur%,*}
            [[ $prefix == "$cur" ]] && prefix="" || prefix+=","
            COMPREPLY=($(compgen -P "$prefix" -W "ASSURED SEEN_REPLY UNREPLIED FIXED_TIMEOUT EXPECTED OFFLOAD HW_OFFLOAD UNSET" -- "${cur##*,}"))
            return ;;
        -e | --event-mask)
            local prefix=${cur%,*}
            [[ $prefix == "$cur" ]] && prefix="" || prefix+=","
            COMPREPLY=($(compgen -P "$prefix" -W "ALL NEW UPDATES DESTROY" -- "${cur##*,}"))
            return ;;
        --state)
            case ${proto,,} in
                sctp | 132) COMPREPLY=($(compgen -W "NONE CLOSED COOKIE_WAIT COOKIE_ECHOED ESTABLISHED SHUTDOWN_SENT SHUTDOWN_RECD SHUTDOWN_ACK_SENT HEARTBEAT_SENT HEARTBEAT_ACKED" -- "$cur")) ;;
                dccp | 33) COMPREPLY=($(compgen -W "NONE REQUEST RESPOND PARTOPEN OPEN CLOSEREQ CLOSING TIMEWAIT" -- "$cur")) ;;
                *) COMPREPLY=($(compgen -W "NONE SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE LISTEN" -- "$cur")) ;;
            esac
            return ;;
        --role)
            COMPREPLY=($(compgen -W "client server" -- "$cur")); return ;;
        -l | --label | --label-add | --label-del)
            if [[ -r /etc/xtables/connlabel.conf ]]; then
                COMPREPLY=($(compgen -W "$(awk '!/^#/ && NF >= 2 {print $2}' /etc/xtables/connlabel.conf)" -- "$cur"))
            fi
            return ;;
    esac

    # No command yet: offer the commands first.
    local w have_cmd=""
    for w in "${words[@]:1:cword-1}"; do
        case $w in
            -[LGDIAUEFCSRhV]* | --dump | --get | --delete | --create | --add | --update | \
            --event | --flush | --counter | --stats | --load-file) have_cmd=1 ;;
        esac
    done
    if [[ -z $have_cmd ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    fi
}
complete -F _ctools_conntrack conntrack
