#!/bin/bash
# capture.sh regenerates the iptables-save captures in this directory from a real kernel.
# Run as root from this directory: ./capture.sh
# Everything happens inside a scratch network namespace, never in the host's.
set -euo pipefail
NS=rtip-scratch
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
N="ip netns exec $NS"

# basic RULES4 RULES6: NAT, marks and a filter with user chains, for both families.
basic() {
	local I=$1 I6=$2
	$N $I -t nat -N PORTFWD
	$N $I -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j PORTFWD
	$N $I -t nat -A PORTFWD -i eth0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.10.5:80
	$N $I -t nat -A PORTFWD ! -i lo -p udp -m multiport --dports 53,5353 -j DNAT --to-destination 192.168.10.53
	$N $I -t nat -A POSTROUTING -s 192.168.10.0/24 ! -d 192.168.0.0/16 -o eth0 -j MASQUERADE
	$N $I -t nat -A POSTROUTING -s 10.20.0.0/16 -o eth1 -j SNAT --to-source 198.18.0.1 --random
	$N $I -t nat -A PREROUTING -i eth2 -p tcp --dport 80 -j REDIRECT --to-ports 3128
	$N $I -t nat -A OUTPUT -d 198.18.5.5/32 -p tcp -j DNAT --to-destination 192.168.10.6:8443
	$N $I -t mangle -A PREROUTING -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff
	$N $I -t mangle -A PREROUTING -m mark ! --mark 0x0/0xff -j RETURN
	$N $I -t mangle -A PREROUTING -i eth1 -m conntrack --ctstate NEW -j MARK --set-xmark 0x2/0xff
	$N $I -t mangle -A PREROUTING -i eth1 -m conntrack --ctstate NEW -j MARK --set-mark 0x3
	$N $I -t mangle -A PREROUTING -m mark --mark 0x2/0xff -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff
	$N $I -t mangle -A OUTPUT -m owner --uid-owner 1000 -j MARK --set-mark 0x10
	$N $I -t mangle -A POSTROUTING -o eth0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
	$N $I -t filter -N INBOUND
	$N $I -t filter -N LOGDROP
	$N $I -t filter -P FORWARD DROP
	$N $I -t filter -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	$N $I -t filter -A INPUT -m conntrack --ctstate INVALID -j DROP
	$N $I -t filter -A INPUT -i lo -j ACCEPT
	$N $I -t filter -A INPUT -g INBOUND
	$N $I -t filter -A INBOUND -p tcp -m multiport --dports 22,80,443 -m comment --comment 'roundtrip: a "b" c' -j ACCEPT
	$N $I -t filter -A INBOUND -p tcp -m tcp ! --dport 22 -m comment --comment "plain" -j LOGDROP
	$N $I -t filter -A INBOUND -m connmark --mark 0x1/0xff -j ACCEPT
	$N $I -t filter -A INBOUND -m addrtype ! --src-type LOCAL --dst-type LOCAL -j ACCEPT
	$N $I -t filter -A INBOUND -m recent --set --name probe --mask 255.255.255.255 --rsource
	$N $I -t filter -A INBOUND -m iprange --src-range 10.0.0.1-10.0.0.9 -j ACCEPT
	$N $I -t filter -A INBOUND -m limit --limit 5/min -j LOG --log-prefix "rt drop: " --log-level 4
	$N $I -t filter -A INBOUND -j REJECT --reject-with icmp-port-unreachable
	$N $I -t filter -A LOGDROP -j DROP
	$N $I -t filter -A FORWARD -i eth1 -o eth0 -m conntrack --ctstate NEW,RELATED,ESTABLISHED -j ACCEPT
	$N $I -t filter -A FORWARD -m state --state ESTABLISHED -j ACCEPT
	$N $I -t filter -A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT
	$N $I -t filter -A FORWARD -s 10.1.2.3/32 -m mac --mac-source 00:11:22:33:44:55 -j ACCEPT
	$N $I -t filter -A FORWARD -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m length --length 0:100 -j ACCEPT
	$N $I -t filter -A FORWARD -p tcp -m tcp --sport 1024:65535 --dport 25 -j DROP
	$N $I -t filter -A FORWARD -d 10.9.0.0/255.255.0.0 -j ACCEPT
	$N $I -t filter -A FORWARD -f -j DROP
	$N $I -t filter -A FORWARD
	$N $I -t raw -A PREROUTING -p udp --dport 123 -j CT --notrack
	$N $I -t raw -A PREROUTING -p udp -m udp --dport 5060 -j CT --helper sip
	$N $I6 -t filter -N V6IN
	$N $I6 -t filter -P INPUT DROP
	$N $I6 -t filter -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	$N $I6 -t filter -A INPUT -p ipv6-icmp -j ACCEPT
	$N $I6 -t filter -A INPUT -s fe80::/10 -j ACCEPT
	$N $I6 -t filter -A INPUT ! -s 2001:db8::/32 -i eth0 -j V6IN
	$N $I6 -t filter -A V6IN -p tcp -m tcp --dport 22 -m comment --comment 'ssh \ back' -j ACCEPT
	$N $I6 -t filter -A V6IN -j REJECT --reject-with icmp6-adm-prohibited
	$N $I6 -t nat -A POSTROUTING -s fd00::/64 -o eth0 -j MASQUERADE
	$N $I6 -t nat -A PREROUTING -d 2001:db8::1/128 -p tcp -m tcp --dport 443 -j DNAT --to-destination '[fd00::5]:8443'
	$N $I6 -t mangle -A PREROUTING -m mark --mark 0x4 -j CONNMARK --save-mark
	$N $I6 -t mangle -A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400
}

# kube I: the shapes docker and kube-proxy write.
kube() {
	local I=$1
	$N $I -t nat -N DOCKER
	$N $I -t nat -N KUBE-SERVICES
	$N $I -t nat -N KUBE-SVC-ABCDEF0123456789
	$N $I -t nat -N KUBE-SEP-1
	$N $I -t nat -N KUBE-SEP-2
	$N $I -t nat -N KUBE-MARK-MASQ
	$N $I -t nat -N KUBE-POSTROUTING
	$N $I -t nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
	$N $I -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
	$N $I -t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
	$N $I -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
	$N $I -t nat -A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
	$N $I -t nat -A DOCKER -i docker0 -j RETURN
	$N $I -t nat -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
	$N $I -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-ABCDEF0123456789
	$N $I -t nat -A KUBE-SVC-ABCDEF0123456789 -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.2:53" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-1
	$N $I -t nat -A KUBE-SVC-ABCDEF0123456789 -j KUBE-SEP-2
	$N $I -t nat -A KUBE-SEP-1 -s 10.244.0.2/32 -j KUBE-MARK-MASQ
	$N $I -t nat -A KUBE-SEP-1 -p udp -m udp -j DNAT --to-destination 10.244.0.2:53
	$N $I -t nat -A KUBE-SEP-2 -p udp -j DNAT --to-destination 10.244.0.3:53
	$N $I -t nat -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
	$N $I -t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
	$N $I -t nat -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
	$N $I -t nat -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
	$N $I -t filter -N DOCKER-USER
	$N $I -t filter -N DOCKER-ISOLATION-STAGE-1
	$N $I -t filter -A FORWARD -j DOCKER-USER
	$N $I -t filter -A FORWARD -j DOCKER-ISOLATION-STAGE-1
	$N $I -t filter -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	$N $I -t filter -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j RETURN
	$N $I -t filter -A DOCKER-USER -j RETURN
	$N $I -t filter -A INPUT -p tcp -m tcp --dport 22 -m hashlimit --hashlimit-above 10/sec --hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name ssh -j DROP
	$N $I -t filter -A INPUT -m pkttype --pkt-type broadcast -j DROP
	$N $I -t filter -A INPUT -p tcp -m tcp --tcp-flags ALL NONE -j DROP
	$N $I -t filter -A INPUT -m u32 --u32 "0>>22&0x3C@12>>26&0x3C@0=0x0" -j DROP
	$N $I -t filter -A INPUT -m string --string "GET /x y" --algo bm --to 65535 -j DROP
	$N $I -t filter -A INPUT -m tos --tos 0x10/0x3f -j ACCEPT
	$N $I -t filter -A INPUT -m ttl --ttl-lt 5 -j DROP
	$N $I -t filter -A INPUT -m conntrack --ctstate DNAT --ctorigdst 198.18.0.1 -j ACCEPT
	$N $I -t filter -A OUTPUT -o eth0 -p tcp -m tcp --dport 443 -m owner ! --uid-owner 0 -j REJECT --reject-with tcp-reset
	$N $I -t raw -A PREROUTING -m rpfilter --invert -j DROP
	$N $I -t mangle -A PREROUTING -m socket --transparent -j MARK --set-mark 0x1
	$N $I -t mangle -A PREROUTING -p tcp -m tcp --dport 80 -j TPROXY --on-port 3129 --on-ip 127.0.0.1 --tproxy-mark 0x1/0x1
	$N $I -t mangle -A FORWARD -p tcp -j TOS --set-tos 0x10/0x3f
	$N $I -t mangle -A POSTROUTING -j CONNMARK --set-xmark 0x5/0xff
}

# traffic makes some counters non-zero.
traffic() {
	$N ip link set lo up
	for i in 1 2 3; do
		$N curl -s -m1 http://127.0.0.1:22/ >/dev/null || true
		$N bash -c 'echo hi > /dev/udp/127.0.0.1/123'
		$N curl -s -m1 'http://[::1]:22/' >/dev/null || true
	done
}

flush_legacy() {
	for t in raw filter mangle nat; do
		$N iptables-legacy -t $t -F; $N iptables-legacy -t $t -X; $N iptables-legacy -t $t -P FORWARD ACCEPT 2>/dev/null || true
		$N ip6tables-legacy -t $t -F; $N ip6tables-legacy -t $t -X
	done
	$N ip6tables-legacy -P INPUT ACCEPT
}

# Only stdout is kept: iptables-nft-save warns about legacy tables on stderr.
basic iptables-legacy ip6tables-legacy
traffic
$N iptables-legacy-save -c >legacy-v4.txt
$N ip6tables-legacy-save -c >legacy-v6.txt
$N iptables-legacy-save >legacy-v4-nocounters.txt
$N ip6tables-legacy-save >legacy-v6-nocounters.txt
flush_legacy
kube iptables-legacy
$N iptables-legacy-save -c >legacy-v4-kube-docker.txt
flush_legacy

basic iptables-nft ip6tables-nft
traffic
$N iptables-nft-save -c >nft-v4.txt
$N ip6tables-nft-save -c >nft-v6.txt
$N iptables-nft-save >nft-v4-nocounters.txt
$N nft flush ruleset
kube iptables-nft
$N iptables-nft-save -c >nft-v4-kube-docker.txt
# Native nft rules in iptables-nft's own table: 1.8.9 prints the set lookup as a bare
# "-A INPUT -j DROP", silently dropping the match (kept to show iptables-nft-save can lie).
$N nft add rule ip filter INPUT meta l4proto tcp th dport 9999 counter accept
$N nft add rule ip filter INPUT ip saddr '{ 10.0.0.1, 10.0.0.2 }' drop
$N iptables-nft-save -c >nft-v4-native-rules.txt
