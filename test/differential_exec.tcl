# differential_exec.tcl -- the tables of differential.test and executing its steps:
# twins, normalised results, the state as steps, replays as text.
# Sourced by differential.test (which says what the test does); not a test
# file of its own.

#=========================================================================
# Tables.
#
# pair i: logstor base name ls$i, native nv$i; renamed: ls${i}_r / nv${i}_r.
# Model name state of a pair: "" (absent), b (base name), r (renamed).
proc lname {i st} { expr {$st eq "r" ? "ls${i}_r" : "ls$i"} }
proc nname {i st} { expr {$st eq "r" ? "nv${i}_r" : "nv$i"} }
proc keycol {i} { expr {$i == 1 ? "pk" : "k"} }
proc coldefs {i} {
  if {$i == 1} { return "pk INTEGER PRIMARY KEY, a, v" }
  return "k $::KT PRIMARY KEY, a INT, v"
}
proc create_sql {i st} {
  list "CREATE VIRTUAL TABLE [lname $i $st] USING logstor([coldefs $i], $::OPTS)" \
       "CREATE TABLE [nname $i $st]([coldefs $i]) WITHOUT ROWID"
}

#=========================================================================
# Executing steps.
#
# A step is a Tcl list:
#   {P conn lsql nsql mode}   twin statement; mode: w (write), o (ordered
#                             rows), u N (unordered rows of N columns),
#                             wr (write, native twin first: OR ROLLBACK)
#   {B conn sql expect}       statement run once; expect 0 ok, 1 error
#   {E conn sql result}       logstor-only read that must give result
#   {X conn sql}              logstor-only statement that must not fail
#   {F conn}                  compare schema and all rows of both pairs
#   {S conn}                  compare schema names
#   {I conn ltab ntab rows}   INSERT of the rows (SQL literals) into both
#   {R}                       close and reopen every connection
#   {K KT}                    (first step of a replay) key type of pair 2

proc open_conns {} {
  foreach c {db db2 dbc} {
    sqlite3 $c test.db
    load_logstor $c
    $c eval {PRAGMA synchronous=OFF}
    $c timeout 200
  }
  db eval {PRAGMA journal_mode=WAL}
}
proc close_conns {} {
  foreach c {db db2 dbc} { catch {$c close} }
}

# Run sql on conn: {0 rows changes} or {1 message errorcode}.
proc run_sql {conn sql} {
  if {[catch {$conn eval $sql} rows]} {
    return [list 1 $rows [$conn errorcode]]
  }
  list 0 $rows [$conn changes]
}

proc normalise {r mode} {
  if {[lindex $r 0]} {
    regsub -all {\m(ls|nv)([12])} [lindex $r 1] {%T\2} msg
    return [list 1 $msg [lindex $r 2]]
  }
  set rows [lindex $r 1]
  switch -- [lindex $mode 0] {
    w { return [list 0 $rows [lindex $r 2]] }
    o { return [list 0 $rows] }
    u {
      set n [lindex $mode 1]
      set l {}
      for {set i 0} {$i < [llength $rows]} {incr i $n} { lappend l [lrange $rows $i [expr {$i + $n - 1}]] }
      return [list 0 [lsort $l]]
    }
  }
}

# Short display form of a result or statement: long words abbreviated.
proc show {x {max 80}} {
  set out {}
  foreach w [split $x " "] {
    if {[string length $w] > $max} {
      set w "[string range $w 0 [expr {$max - 20}]]...([string length $w] chars)"
    }
    lappend out $w
  }
  set s [join $out " "]
  if {[string length $s] > 4000} { set s "[string range $s 0 3999]...([string length $s] chars)" }
  # Control characters (NULs of blobs) as \xNN.
  regsub -all {[\x00-\x08\x0b-\x1f]} $s {?} s
  return $s
}

# Schema names of both pairs as seen by conn: dict i -> {lstate nstate}.
proc schema_state {conn} {
  set names [$conn eval {
    SELECT name FROM sqlite_schema WHERE type = 'table'
       AND name IN ('ls1','ls1_r','nv1','nv1_r','ls2','ls2_r','nv2','nv2_r')
  }]
  set d {}
  foreach i {1 2} {
    set l {}
    set n {}
    foreach st {b r} {
      if {[lname $i $st] in $names} { lappend l $st }
      if {[nname $i $st] in $names} { lappend n $st }
    }
    dict set d $i [list $l $n]
  }
  return $d
}

# The columns of a full comparison: key, a and v with their types, quoted
# and raw (quote() hides the sign of -0.0, the raw value shows it; both stop
# at a NUL in a text, so such a text is also given in hex).
proc full_sql {i tab} {
  set k [keycol $i]
  set cols {}
  foreach c [list $k a v] {
    lappend cols "typeof($c), quote($c), $c, CASE WHEN typeof($c) = 'text' AND instr(CAST($c AS BLOB), x'00') THEN hex($c) END"
  }
  return "SELECT [join $cols {, }] FROM $tab ORDER BY $k"
}

# Execute one step; returns "" or a failure description
# {what statement logstor-result native-result}.  Sets ::last (results).
proc exec_step {step} {
  set ::last {}
  switch -- [lindex $step 0] {
    P {
      lassign $step - conn lsql nsql mode
      if {$mode eq "wr"} {
        set rn [normalise [run_sql $conn $nsql] w]
        set rl [normalise [run_sql $conn $lsql] w]
      } else {
        set rl [normalise [run_sql $conn $lsql] $mode]
        set rn [normalise [run_sql $conn $nsql] $mode]
      }
      set ::last [list $rl $rn]
      if {$rl ne $rn} { return [list "results differ" "$conn: $lsql" $rl $rn $nsql] }
    }
    B {
      lassign $step - conn sql expect
      set r [run_sql $conn $sql]
      set ::last [list $r]
      if {[lindex $r 0] != $expect} {
        set want [expr {$expect ? "an error" : "success"}]
        return [list "transaction statement: SQLite's rules give $want" "$conn: $sql" $r $want]
      }
    }
    E {
      lassign $step - conn sql want
      set r [run_sql $conn $sql]
      if {[lindex $r 0] || [lindex $r 1] ne $want} {
        return [list "logstor-only statement" "$conn: $sql" $r [list 0 $want]]
      }
    }
    X {
      lassign $step - conn sql
      set r [run_sql $conn $sql]
      if {[lindex $r 0]} { return [list "logstor-only statement failed" "$conn: $sql" $r {0 ...}] }
    }
    S - F {
      lassign $step kind conn
      if {[catch {schema_state $conn} sch]} {
        return [list "reading the schema failed" "$conn: SELECT name FROM sqlite_schema" $sch {}]
      }
      dict for {i ln} $sch {
        lassign $ln l n
        if {$l ne $n} {
          return [list "schema differs (pair $i: logstor names [list $l], native names [list $n])" \
                    "$conn: SELECT name FROM sqlite_schema" $l $n]
        }
        if {$kind eq "F" && [llength $n] == 1} {
          set lsql [full_sql $i [lname $i $n]]
          set nsql [full_sql $i [nname $i $n]]
          set rl [normalise [run_sql $conn $lsql] o]
          set rn [normalise [run_sql $conn $nsql] o]
          if {$rl ne $rn} { return [list "contents differ" "$conn: $lsql" $rl $rn $nsql] }
        }
      }
    }
    I {
      # Rebuilding the state must work on both sides.
      lassign $step - conn lt nt rows
      set vals [join $rows ", "]
      set r [exec_step [list P $conn "INSERT INTO $lt VALUES $vals" "INSERT INTO $nt VALUES $vals" w]]
      if {$r eq "" && [lindex $::last 1 0]} {
        set r [list "rebuilding the state failed" "$conn: INSERT INTO $nt VALUES $vals" {*}$::last]
      }
      return $r
    }
    R {
      close_conns
      open_conns
    }
    K {
      set ::KT [lindex $step 1]
    }
    default { error "bad step $step" }
  }
  return ""
}

#=========================================================================
# Replays: the steps since the last reopen, preceded by the state at that
# reopen as steps (CREATE and INSERT of both twins).

# A SQL literal for a value read as {typeof quote raw hex-if-text-with-NUL}.
proc literal {type quoted raw hex} {
  switch -- $type {
    real {
      if {$raw eq "Inf"} { return 9e999 }
      if {$raw eq "-Inf"} { return -9e999 }
      if {$raw eq "-0.0"} { return -0.0 }
      return $quoted
    }
    text {
      # quote() stops at a NUL byte.
      if {$hex ne ""} { return "CAST(X'$hex' AS TEXT)" }
      return $quoted
    }
    default { return $quoted }
  }
}

# Steps that rebuild the current committed state (read through dbc).
proc state_steps {} {
  set steps [list [list K $::KT]]
  set sch [schema_state dbc]
  foreach i {1 2} {
    set n [lindex [dict get $sch $i] 1]
    if {[llength $n] != 1} continue
    lassign [create_sql $i $n] lc nc
    lappend steps [list P db $lc $nc w]
    set rows {}
    set flat [dbc eval [full_sql $i [nname $i $n]]]
    foreach {kt kq kr kh at aq ar ah vt vq vr vh} $flat {
      lappend rows "([literal $kt $kq $kr $kh], [literal $at $aq $ar $ah], [literal $vt $vq $vr $vh])"
    }
    # In chunks, so that a statement stays readable.
    for {set j 0} {$j < [llength $rows]} {incr j 20} {
      lappend steps [list I db [lname $i $n] [nname $i $n] [lrange $rows $j [expr {$j + 19}]]]
    }
  }
  lappend steps {F dbc}
  return $steps
}

proc same {x} { return $x }
proc step_sql {step {abbrev 1}} {
  set f [expr {$abbrev ? "show" : "same"}]
  switch -- [lindex $step 0] {
    I {
      lassign $step - conn lt nt rows
      set vals [join $rows ", "]
      return [step_sql [list P $conn "INSERT INTO $lt VALUES $vals" "INSERT INTO $nt VALUES $vals" w] $abbrev]
    }
    P {
      lassign $step - conn lsql nsql mode
      if {$mode eq "wr"} {
        return "[format %-4s $conn:] [$f $nsql];\n[format %-4s $conn:] [$f $lsql];   -- compare (w)"
      }
      return "[format %-4s $conn:] [$f $lsql];\n[format %-4s $conn:] [$f $nsql];   -- compare ($mode)"
    }
    B {
      lassign $step - conn sql expect
      return "[format %-4s $conn:] $sql;[expr {$expect ? "   -- fails, by SQLite's rules" : ""}]"
    }
    E { return "[format %-4s [lindex $step 1]:] [lindex $step 2];   -- must give [lindex $step 3]" }
    X { return "[format %-4s [lindex $step 1]:] [lindex $step 2];" }
    F { return "-- [lindex $step 1]: compare schema and all rows of both pairs" }
    S { return "-- [lindex $step 1]: compare schema names" }
    R { return "-- close and reopen every connection" }
    K { return "-- pair 2 key type: '[lindex $step 1]'" }
  }
}

proc replay_text {steps {abbrev 1}} {
  set out {}
  foreach s $steps { lappend out [step_sql $s $abbrev] }
  join $out \n
}
