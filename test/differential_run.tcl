# differential_run.tcl -- differential.test's rounds: a round in its child process,
# the parent's children, crash reports, replays and their reduction.
# Sourced by differential.test (which says what the test does); not a test
# file of its own.

#=========================================================================
# A round, in the child process.

proc journal {args} {
  puts $::J [list {*}$args]
  flush $::J
}

proc report {prefix n step fail replay} {
  lassign $fail what stmt rl rn nsql
  set file [file join $::tmpbase "logstor-diff-$::SEED-$::PROFILE.replay"]
  set f [open $file w]
  foreach s $replay { puts $f $s }
  close $f
  puts "replay since the last reopen (the state at the reopen, then every statement; file $file):"
  puts [replay_text $replay]
  puts "=== MISMATCH: seed $::SEED, round $::PROFILE, step $n: $what"
  puts "statement  $stmt"
  if {$nsql ne ""} { puts "native     $nsql" }
  puts "logstor -> [show $rl]"
  puts "native  -> [show $rn]"
  puts "replay: LOGSTOR_DIFF_REPLAY=$file"
}

# Execute steps (a replay or a generated round); returns "" or a failure.
proc run_round {profile seed steps} {
  set ::PROFILE $profile
  expr {srand($seed)}
  profile $profile
  set ::KT [pick {TEXT {}}]
  model_init
  open_conns
  set replay {}
  set n 0
  set setup [list [list K $::KT]]
  foreach i {1 2} { lappend setup [list P db {*}[create_sql $i b] w] }
  lappend setup {F dbc}
  set ::queue $setup
  set nact 0
  while {1} {
    if {![llength $::queue]} {
      if {[incr nact] > $steps} break
      set ::queue [gen_action]
      continue
    }
    set step [lindex $::queue 0]
    set ::queue [lrange $::queue 1 end]
    set ::curstep $step
    incr n
    journal $n EXEC $step
    lappend replay $step
    if {$::VERBOSE} { puts "$n [step_sql $step]" }
    set fail [exec_step $step]
    if {$::VERBOSE && $::last ne ""} { puts "   => [show $::last 30]" }
    if {$fail ne ""} {
      report $profile $n $step $fail $replay
      return "step $n: [lindex $fail 0]: [show [lindex $fail 1] 40]"
    }
    model_after $step
    # After every write, and after a transaction statement, compare all.
    set k [lindex $step 0]
    if {[lindex $step 1] eq "db" && (($k eq "P" && [lindex $step 4] in {w wr}) || $k eq "B")} {
      lappend ::queue {F dbc}
      if {$k eq "B" || [string match "*TABLE*" [lindex $step 2]]} { lappend ::queue {S db} }
    }
    if {$k eq "R"} {
      # The replay starts over: the state now, as statements.
      set replay [state_steps]
      journal $n MARK
      foreach s $replay { journal $n PRE $s }
      lappend ::queue [list E db "SELECT [join [lmap i {1 2} {expr {[dict get $::M(cnames) $i] eq "" ? "'ok'" :
           "logstor_check('[lname $i [dict get $::M(cnames) $i]]')"}}] {, }]" {ok ok}]
    }
  }
  if {$::VERBOSE} {
    puts "rows: [lmap i {1 2} {expr {[dict get $::M(cnames) $i] eq "" ? "-" :
      [dbc eval "SELECT count(*) FROM [nname $i [dict get $::M(cnames) $i]]"]}}]"
    puts [dbc eval {SELECT name, value FROM logstor_stats WHERE scope = 'engine' AND name IN
      ('segments_compacted', 'segments_freed', 'segments_freed_by_separator', 'separator_segments_adopted',
       'tombstones_dropped', 'bytes_written', 'user_bytes_written', 'segments_total')}]
  }
  close_conns
  return ""
}

# What a failure is, for the reducer: its kind, the statement's first two
# words, and the logstor side's error (digits and names left out) or "rows".
proc signature {fail} {
  lassign $fail what stmt rl rn
  regsub {\(.*} $what {} what
  set words [lrange [regexp -inline -all {[A-Za-z]+} [lindex [split $stmt :] 1]] 0 1]
  set r rows
  if {[lindex $rl 0] == 1} {
    regsub -all {[0-9]+|/\S*} [lindex $rl 1] {} r
  }
  return "[string trim $what] / $words / $r"
}

proc run_replay {file} {
  set f [open $file]
  set steps [split [string trim [read $f]] \n]
  close $f
  set ::PROFILE replay
  set ::KT TEXT
  open_conns
  set n 0
  foreach step $steps {
    incr n
    set ::curstep $step
    journal $n EXEC $step
    if {$::VERBOSE} { puts "$n [step_sql $step]" }
    set fail [exec_step $step]
    if {$::VERBOSE && $::last ne ""} { puts "   => [show $::last 30]" }
    if {$fail ne ""} {
      lassign $fail what stmt rl rn nsql
      puts "=== MISMATCH: replay step $n: $what"
      puts "statement  $stmt"
      puts "logstor -> [show $rl]"
      puts "native  -> [show $rn]"
      puts "RESULT [list fail $n [signature $fail]]"
      close_conns
      return
    }
  }
  close_conns
  puts "RESULT ok"
}

#=========================================================================
# The parent: one child process per round.

# Run the child with args; returns {status output} where status is ok,
# fail (a difference, reported by the child) or crash.
proc run_child {args} {
  set dir [file join $::workdir "c[incr ::nchild]"]
  file mkdir $dir
  set cmd [list [info nameofexecutable] $::SCRIPT child $dir {*}$args]
  if {[info exists ::CHILD_TIMEOUT]} { set cmd [list timeout $::CHILD_TIMEOUT {*}$cmd] }
  set chan [open "|$cmd 2>@1" r]
  set out [read $chan]
  set status ok
  if {[catch {close $chan} msg opts]} {
    set ec [dict get $opts -errorcode]
    if {[lindex $ec 0] eq "CHILDKILLED"} {
      set status "crash ([lindex $ec 2])"
    } elseif {[lindex $ec 0] eq "CHILDSTATUS" && [lindex $ec 2] != 1} {
      set status "crash (exit status [lindex $ec 2])"
    } else {
      set status fail
    }
  }
  if {$status eq "ok" && ![string match "*RESULT ok*" $out]} { set status fail }
  list $status $out $dir
}

# The replay of a crashed child, from its journal.
proc journal_replay {dir} {
  set steps {}
  set last {}
  set lastn 0
  set f [open [file join $dir journal]]
  while {[gets $f line] >= 0} {
    if {[catch {lassign $line n kind step}]} break
    switch $kind {
      MARK { set steps {} }
      PRE - EXEC { lappend steps $step }
    }
    if {$kind eq "EXEC"} { set last $step; set lastn $n }
  }
  close $f
  list $steps $last $lastn
}

proc crash_report {profile status out dir} {
  lassign [journal_replay $dir] steps last n
  set file [file join $::tmpbase "logstor-diff-$::SEED-$profile.replay"]
  set f [open $file w]
  foreach s $steps { puts $f $s }
  close $f
  puts "replay since the last reopen (file $file):"
  puts [replay_text $steps]
  set lines [split [string trim $out] \n]
  puts "output of the crashed process (last lines):"
  foreach l [lrange $lines end-25 end] { puts "    $l" }
  puts "=== CRASH: seed $::SEED, round $profile, step $n: $status"
  puts "statement  [step_sql $last]"
  return "step $n: $status at: [show [step_sql $last] 40]"
}

proc child_main {dir args} {
  # Work in the directory the parent gave (its own is not needed).
  cd $dir
  file delete -force $::workdir
  set ::J [open journal w]
  lassign $args mode a b c
  if {$mode eq "round"} {
    set ::SEED $a
    set r [run_round $b [expr {($a * 7919 + [lsearch {conflict savepoint ddl twoconn mixed} $b] * 104729 + 1) & 0x7fffffff}] $c]
    puts "RESULT [expr {$r eq "" ? "ok" : [list fail $r]}]"
  } else {
    run_replay $a
  }
  close $::J
  exit 0
}

# Shrink a failing replay: remove chunks of steps (ddmin) while the replay
# still fails the same way (same kind: crash, or a difference of the same
# description).
proc replay_outcome {steps} {
  set file [file join $::workdir "try.replay"]
  set f [open $file w]
  foreach s $steps { puts $f $s }
  close $f
  lassign [run_child replay $file] status out dir
  file delete -force $dir
  if {[string match crash* $status]} { return crash }
  if {$status eq "ok"} { return ok }
  foreach line [split $out \n] {
    if {[string match "RESULT fail *" $line]} { return "fail [lindex $line 3]" }
  }
  return fail
}
# Long string literals of one SQL statement made short.
proc shorten_sql {sql} {
  set out ""
  set at 0
  while {[regexp -start $at -indices {'(?:[^']|'')*'} $sql m]} {
    lassign $m a b
    set lit [string range $sql $a $b]
    append out [string range $sql $at [expr {$a - 1}]]
    if {[string length $lit] > 24} {
      set hex [regexp {[xX]$} [string range $sql 0 [expr {$a - 1}]]]
      set lit [expr {$hex ? "'00'" : "'long'"}]
    }
    append out $lit
    set at [expr {$b + 1}]
  }
  append out [string range $sql $at end]
  regsub -all {zeroblob\(\d+\)} $out {zeroblob(4)} out
  regsub -all {printf\('%\.\*c', \d+,} $out {printf('%.*c', 4,} out
  return $out
}
proc shorten {st} {
  switch -- [lindex $st 0] {
    P { lset st 2 [shorten_sql [lindex $st 2]]; lset st 3 [shorten_sql [lindex $st 3]] }
    I { lset st 4 [lmap r [lindex $st 4] {shorten_sql $r}] }
    B - E - X { lset st 2 [shorten_sql [lindex $st 2]] }
  }
  return $st
}
proc reduce {file} {
  set f [open $file]
  set steps [split [string trim [read $f]] \n]
  close $f
  set want [replay_outcome $steps]
  puts "reduce: [llength $steps] steps, outcome: $want"
  if {$want eq "ok"} { puts "reduce: the replay does not fail"; return }
  # The K step stays first; the state's rows become one step each.
  set head [lrange $steps 0 0]
  set l {}
  foreach st [lrange $steps 1 end] {
    if {[lindex $st 0] eq "I"} {
      foreach row [lindex $st 4] { lappend l [lreplace $st 4 4 [list $row]] }
    } else {
      lappend l $st
    }
  }
  set steps $l
  set n 2
  while {[llength $steps] >= 2} {
    set len [llength $steps]
    set chunk [expr {($len + $n - 1) / $n}]
    set done 0
    for {set s 0} {$s < $len} {incr s $chunk} {
      set try [lreplace $steps $s [expr {$s + $chunk - 1}]]
      if {[replay_outcome [concat $head $try]] eq $want} {
        set steps $try
        set n [expr {max($n - 1, 2)}]
        set done 1
        puts "reduce: [llength $steps] steps"
        break
      }
    }
    if {!$done} {
      if {$chunk == 1} break
      set n [expr {min($n * 2, [llength $steps])}]
    }
  }
  # Shorter values: long literals, then single steps.
  set short [lmap st $steps {shorten $st}]
  if {$short ne $steps && [replay_outcome [concat $head $short]] eq $want} {
    set steps $short
  } else {
    for {set j 0} {$j < [llength $steps]} {incr j} {
      set st [lindex $steps $j]
      set sh [shorten $st]
      if {$sh eq $st} continue
      set try [lreplace $steps $j $j $sh]
      if {[replay_outcome [concat $head $try]] eq $want} { set steps $try }
    }
  }
  # Rows of the state together again.
  set l {}
  foreach st $steps {
    set prev [lindex $l end]
    if {[lindex $st 0] eq "I" && [lindex $prev 0] eq "I" && [lrange $prev 0 3] eq [lrange $st 0 3]} {
      lset l end 4 [concat [lindex $prev 4] [lindex $st 4]]
    } else {
      lappend l $st
    }
  }
  set steps [concat $head $l]
  set f [open $file.min w]
  foreach s $steps { puts $f $s }
  close $f
  puts "reduced replay ($want), file $file.min:"
  puts [replay_text $steps 0]
}
